"""Grey, RGB and RGBA images: decoded as they are (or as asked), converted as PIL converts them."""
import numpy as np
import pytest
import torch
from PIL import Image

from datafree.data import build_dataset, load_image_folder
from datafree.data.dataset import convert_channels
from datafree.errors import DatafreeError


def _folder(root, modes_by_class, size=6):
    """One image per entry: class folder -> list of PIL modes."""
    rng = np.random.default_rng(0)
    for label, modes in modes_by_class.items():
        (root / label).mkdir(parents=True)
        for i, mode in enumerate(modes):
            bands = len(Image.new(mode, (1, 1)).getbands())
            pixels = rng.integers(0, 256, (size, size, bands), dtype=np.uint8)
            Image.fromarray(pixels[..., 0] if bands == 1 else pixels, mode).save(root / label / f"{i}.png")
    return root


@pytest.mark.parametrize("modes, channels", [
    (["L", "L"], 1),
    (["RGB", "RGB"], 3),
    (["RGBA", "RGBA"], 4),
    (["L", "RGB"], 3),       # mixed kinds become RGB, as PIL's convert("RGB") makes them
    (["RGBA", "RGB"], 3),
])
def test_images_decode_with_their_own_channels(tmp_path, modes, channels):
    folder = _folder(tmp_path / "src", {"a": modes[:1], "b": modes[1:]})
    dataset = load_image_folder(folder, cache=False)
    assert dataset.channels == channels
    for path, image in zip(sorted(folder.glob("*/*.png")), dataset.images):
        with Image.open(path) as im:
            expected = np.asarray(im.convert({1: "L", 3: "RGB", 4: "RGBA"}[channels]))
        assert np.array_equal(image.permute(1, 2, 0).numpy().squeeze(-1) if channels == 1 else
                              image.permute(1, 2, 0).numpy(), expected)


@pytest.mark.parametrize("asked", [1, 3, 4])
def test_asked_channels_convert_every_image(tmp_path, asked):
    folder = _folder(tmp_path / "src", {"a": ["L", "RGB"], "b": ["RGBA"]})
    dataset = build_dataset("imagefolder", path=str(folder), channels=asked)
    assert dataset.channels == asked
    # The tensor conversion agrees with decoding: grey -> RGB -> grey is the identity.
    grey = build_dataset("imagefolder", path=str(folder), channels=1)
    assert torch.equal(convert_channels(convert_channels(grey.images, 3), 1), grey.images)


def test_tensor_conversion_matches_pil():
    images = torch.randint(0, 256, (4, 4, 5, 7), dtype=torch.uint8)
    for have, want, mode in [(3, 1, "L"), (4, 3, "RGB"), (4, 1, "L"), (3, 4, "RGBA")]:
        source = images[:, :have]
        pil_mode = {3: "RGB", 4: "RGBA"}[have]
        expected = [np.asarray(Image.fromarray(x.permute(1, 2, 0).numpy(), pil_mode).convert(mode)) for x in source]
        got = convert_channels(source, want)
        assert got.shape[1] == want
        assert np.array_equal(got.permute(0, 2, 3, 1).numpy().reshape(np.stack(expected).shape), np.stack(expected))


def test_channels_of_generated_and_bad_requests():
    assert build_dataset("shapes", n=10, channels=1).images.shape[1] == 1
    rgba = build_dataset("shapes", n=10, channels=4)
    assert rgba.channels == 4 and rgba.images[:, 3].eq(255).all()
    with pytest.raises(DatafreeError, match="data.channels"):
        build_dataset("shapes", n=10, channels=2)
    with pytest.raises(DatafreeError, match="1 .grey., 3 .RGB. and 4 .RGBA. channels, not from 2"):
        convert_channels(torch.zeros(1, 2, 4, 4, dtype=torch.uint8), 3)


def _deep(root, values: np.ndarray, mode: str | None = None):
    """Two classes of one grey image each, saved from ``values`` (uint16 -> a 16-bit PNG; int32/float32 -> TIFF)."""
    suffix = ".png" if values.dtype == np.uint16 else ".tif"
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        Image.fromarray(values, mode).save(root / label / f"0{suffix}")
    return root


def test_grey_images_of_more_than_8_bits_are_read_when_their_values_are_8_bit_and_refused_otherwise(tmp_path):
    """PIL's 8-bit conversion clips a 16-bit X-ray at 255 (it turns white): such images are refused, naming the range
    and how to convert them; 16-bit or float files whose values are whole numbers in 0..255 read exactly."""
    eight = np.arange(64, dtype=np.uint16).reshape(8, 8) * 4  # 0..252 in a 16-bit PNG
    for values in (eight, eight.astype(np.int32), eight.astype(np.float32)):
        folder = _deep(tmp_path / str(values.dtype), values)
        dataset = load_image_folder(folder, cache=False)
        assert dataset.channels == 1 and np.array_equal(dataset.images[0, 0].numpy(), eight.astype(np.uint8))
    for name, values in (("sixteen", eight * 200), ("fraction", eight.astype(np.float32) / 255)):
        with pytest.raises(DatafreeError, match=r"holds values 0\.\.[0-9.]+ \(PIL mode (I;16|F): more than 8 bits\), "
                                                r"and datafree reads 8-bit images: .*windowing"):
            load_image_folder(_deep(tmp_path / name, values), cache=False)
