"""datafree inspect: the summary, every checksum, the pictures; a flipped byte is caught."""
import pytest
from PIL import Image

from fakes import AimingSynthesizer, red_teacher
from datafree import cli
from datafree.errors import DatafreeError
from datafree.export import SyntheticSet, synthesize_dataset


@pytest.fixture
def data_set(tmp_path):
    synthesize_dataset(red_teacher(), AimingSynthesizer(batch_size=12), tmp_path / "set", 40, shard_size=16,
                       format="both", progress=False, log=lambda _: None)
    return tmp_path / "set"


def test_inspect_summarises_verifies_and_draws(data_set, tmp_path, capsys):
    assert cli.main(["inspect", str(data_set), "--out", str(tmp_path / "pictures"), "--per-class", "3"]) == 0
    out = capsys.readouterr().out
    assert "(complete)" in out and "40 of 3x8x8 images, 4 classes; 3 shards + ImageFolder" in out
    assert "c0 10, c1 10, c2 10, c3 10" in out and "RedTeacher" in out
    assert "checksums: all 45 files match the manifest" in out  # 3 shards, 40 PNGs, 2 sidecars
    grid = Image.open(tmp_path / "pictures" / "samples_per_class.png")
    assert grid.width > 3 * 48 and grid.height > 4 * 48  # tiny images upscaled, one row per class
    assert (tmp_path / "pictures" / "class_histogram.png").is_file()


@pytest.mark.parametrize("kind", ["shard", "png"])
def test_a_flipped_byte_is_caught(data_set, tmp_path, capsys, kind):
    path = data_set / "shard_00001.pt" if kind == "shard" else sorted(data_set.glob("imagefolder/*/*.png"))[5]
    victim = path.relative_to(data_set).as_posix()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    assert cli.main(["inspect", str(data_set), "--no-pictures"]) == 1
    out = capsys.readouterr().out
    assert "checksums: 1 of 45 files do NOT match the manifest" in out and f"{victim} differs from the manifest" in out
    with pytest.raises(DatafreeError, match=f"does not match its manifest .*{victim} differs"):
        SyntheticSet(data_set).require("distil from it")  # what distill data=synthetic and audit check


def test_inspect_refuses_what_is_not_a_data_set(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hello")
    assert cli.main(["inspect", str(tmp_path)]) == 2
    assert "holds no manifest.json" in capsys.readouterr().err
    assert cli.main(["inspect", str(tmp_path / "notes.txt")]) == 2
    assert "is a file, not a synthetic data set" in capsys.readouterr().err
