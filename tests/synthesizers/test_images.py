"""Images the user may use, drawn at random (synthesizer=images): read at the teacher's size and channels,
whatever their folders, sizes and kinds; labels never read."""
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from contract import CPU, SynthesizerContract, bind
from nets import TinyBNNet
from datafree.errors import DatafreeError
from datafree.synthesizers import ImagesSynthesizer


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("DATAFREE_CACHE", str(tmp_path / "cache"))


def write_images(root: Path, sizes=((10, 12), (8, 8), (16, 9)), mode="RGB", nested=True) -> Path:
    """Images of several sizes, some in a class folder, some loose, one deeper, each of one flat colour."""
    root.mkdir(parents=True, exist_ok=True)
    places = [root, root / "a", root / "b" / "deeper"] if nested else [root]
    for k, (height, width) in enumerate(sizes):
        folder = places[k % len(places)]
        folder.mkdir(parents=True, exist_ok=True)
        value = 40 + 60 * k
        array = np.full((height, width) if mode == "L" else (height, width, 3), value, dtype=np.uint8)
        Image.fromarray(array, mode).save(folder / f"{k}.png")
    (root / "notes.txt").write_text("not an image")
    return root


class TestImages(SynthesizerContract):
    uses_teacher = False
    needs_batchnorm = False
    bad_settings = [(dict(batch_size=0), "batch_size must be an int >= 1"),
                    (dict(path=None), "set synthesizer.path=DIR"),
                    (dict(per_class=0), "per_class must be null")]
    folder: Path | None = None

    def make(self, **overrides):
        if TestImages.folder is None:
            TestImages.folder = write_images(Path(tempfile.mkdtemp()) / "images")
        return ImagesSynthesizer(**{**dict(path=str(TestImages.folder), batch_size=6), **overrides})


def _bound(path, size=(3, 8, 8), batch_size=5):
    synth = ImagesSynthesizer(path=str(path), batch_size=batch_size)
    synth.bind(TinyBNNet(), TinyBNNet(), 4, size, CPU)
    return synth


def test_every_image_at_any_depth_is_read_at_the_teachers_size(tmp_path):
    synth = _bound(write_images(tmp_path / "images"))
    assert synth.images.dtype == torch.uint8 and synth.images.shape == (3, 3, 8, 8)
    assert sorted(synth.images.float().mean((1, 2, 3)).round().tolist()) == [40, 100, 160]  # flat colours kept
    batch = synth.synthesize()
    assert batch.targets is None and batch.images.shape == (5, 3, 8, 8)
    assert set(batch.images.mul(255).round().mean((1, 2, 3)).tolist()) <= {40.0, 100.0, 160.0}
    assert synth.sample(7).shape == (7, 3, 8, 8)


def test_a_non_square_teacher_and_other_channel_counts(tmp_path):
    grey = write_images(tmp_path / "grey", mode="L")
    assert _bound(grey, size=(3, 8, 12)).images.shape == (3, 3, 8, 12)  # grey images for an RGB teacher
    assert _bound(write_images(tmp_path / "rgb"), size=(1, 8, 8)).images.shape == (3, 1, 8, 8)


def test_an_archive_of_images(tmp_path):
    folder = write_images(tmp_path / "images")
    with tarfile.open(tmp_path / "images.tar.gz", "w:gz") as tar:
        tar.add(folder, arcname="images")
    assert torch.equal(_bound(tmp_path / "images.tar.gz").images.sort(0).values, _bound(folder).images.sort(0).values)


@pytest.mark.parametrize("make_path, needle", [
    (lambda tmp: tmp / "nowhere", "synthesizer.path .* does not exist"),
    (lambda tmp: (tmp / "f.txt").write_text("x") and tmp / "f.txt", "is a file but not an archive"),
    (lambda tmp: (tmp / "empty" / "sub").mkdir(parents=True) or tmp / "empty",
     r"no images found in .* \(at any depth\)"),
])
def test_a_path_without_images_says_what_to_give(tmp_path, make_path, needle):
    with pytest.raises(DatafreeError, match=needle):  # a path that cannot hold images: in the constructor already
        _bound(make_path(tmp_path))


class Brightness(nn.Module):
    """Four classes: the first for bright images, the second for dark ones, the last two for neither."""

    def forward(self, x):
        b = 10 * (x.mean((1, 2, 3)) - 0.5)
        return torch.stack([b, -b, torch.zeros_like(b), torch.zeros_like(b)], 1)


def test_per_class_keeps_the_images_the_teacher_is_surest_of_for_each_class(tmp_path):
    """DFND's selection: for each class the images the teacher gives it the highest probability, each kept once."""
    folder = tmp_path / "images"
    folder.mkdir()
    for k, value in enumerate((20, 60, 100, 140, 180, 220)):
        Image.fromarray(np.full((8, 8, 3), value, dtype=np.uint8)).save(folder / f"{k}.png")
    synth = ImagesSynthesizer(path=str(folder), batch_size=4, per_class=1)
    synth.bind(Brightness(), TinyBNNet(), 4, (3, 8, 8), CPU)
    # the brightest (class 0), the darkest (class 1), and for classes 2 and 3 the one nearest the middle (kept once)
    assert sorted(synth.images.float().mean((1, 2, 3)).round().tolist()) == [20, 140, 220]
    synth = ImagesSynthesizer(path=str(folder), batch_size=4, per_class=2)
    synth.bind(Brightness(), TinyBNNet(), 4, (3, 8, 8), CPU)
    assert sorted(synth.images.float().mean((1, 2, 3)).round().tolist()) == [20, 60, 100, 140, 180, 220]
