import gzip
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import datafree.data.folders as folders
from datafree.data import load_image_folder, load_tarball
from datafree.errors import DatafreeError

CLASSES = ["cat", "ant", "dog"]  # written unsorted; loaders sort them


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("DATAFREE_CACHE", str(cache))
    return cache


def pixels(k, j, size=8):
    """A distinct flat colour per image plus a gentle ramp: exact in PNG, close in JPEG."""
    colour = np.random.default_rng(100 * k + j).integers(40, 200, 3)
    ramp = np.add.outer(np.arange(size), np.arange(size)) * (48 // size)
    return (colour[None, None, :] + ramp[:, :, None]).astype(np.uint8)


def make_folder(root: Path, per_class=(2, 3, 1), fmt="png", size=8, extras=True) -> Path:
    """root/<class>/<j>.<fmt> with known pixels, plus files that must be skipped."""
    for k, (name, count) in enumerate(zip(CLASSES, per_class)):
        (root / name).mkdir(parents=True, exist_ok=True)
        for j in range(count):
            Image.fromarray(pixels(k, j, size)).save(root / name / f"{j:03d}.{fmt}")
    if extras:
        (root / "cat" / "notes.txt").write_text("not an image")
        (root / "cat" / "000.png.bak").write_bytes(b"junk")
        (root / "cat" / ".hidden.png").write_bytes(b"junk")  # hidden: skipped even with an image suffix
        (root / "dog" / "gnp").write_bytes(b"junk")  # would survive a str.strip('.png') bug
        (root / "README.md").write_text("top-level files are not classes")
    return root


def expected(per_class=(2, 3, 1), size=8):
    """Images and labels in loader order: classes sorted, files sorted within each class."""
    images, labels = [], []
    for label, name in enumerate(sorted(CLASSES)):
        k = CLASSES.index(name)
        for j in range(per_class[k]):
            images.append(pixels(k, j, size))
            labels.append(label)
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2), torch.tensor(labels)


def make_tar(folder: Path, archive: Path, wrap: str | None) -> Path:
    mode = "w" if archive.suffix == ".tar" else "w:gz"
    with tarfile.open(archive, mode) as tar:
        tar.add(folder, arcname=wrap if wrap else ".")
    return archive


def test_image_folder_round_trip(tmp_path):
    root = make_folder(tmp_path / "train")
    ds = load_image_folder(root)
    images, labels = expected()
    assert ds.classes == sorted(CLASSES)
    assert ds.images.dtype == torch.uint8 and ds.images.shape == (6, 3, 8, 8)
    assert torch.equal(ds.images, images)
    assert torch.equal(ds.labels, labels)


def test_image_folder_jpeg_and_resize(tmp_path):
    root = make_folder(tmp_path / "train", fmt="jpg", extras=False)
    (root / "ant" / "upper.JPEG").write_bytes((root / "ant" / "000.jpg").read_bytes())  # suffix case ignored
    ds = load_image_folder(root, image_size=4)
    assert ds.images.shape == (7, 3, 4, 4)
    assert ds.class_counts().tolist() == [4, 2, 1]
    full = load_image_folder(root)
    assert full.images.shape == (7, 3, 8, 8)
    images, _ = expected()
    keep = [0, 1, 2, 4, 5, 6]  # drop the extra ant copy
    assert (full.images[keep].int() - images.int()).abs().float().mean() < 12  # lossy but close (a wrong order is ~60)


def test_grayscale_and_rgba_become_rgb(tmp_path):
    root = tmp_path / "set"
    (root / "a").mkdir(parents=True)
    Image.fromarray(np.full((5, 5), 77, np.uint8), mode="L").save(root / "a" / "gray.png")
    Image.fromarray(np.full((5, 5, 4), 200, np.uint8), mode="RGBA").save(root / "a" / "rgba.png")
    ds = load_image_folder(root)
    assert ds.images.shape == (2, 3, 5, 5)
    assert ds.images[0].eq(77).all() and ds.images[1].eq(200).all()


def test_mixed_sizes_need_image_size(tmp_path):
    root = make_folder(tmp_path / "train", extras=False)
    Image.fromarray(np.zeros((6, 10, 3), np.uint8)).save(root / "dog" / "wide.png")
    # height x width, as train-teacher's and distill's lines give sizes (it said 10x6 where they say 6x10)
    with pytest.raises(DatafreeError, match=r"images differ in size \(height x width\): \S+000.png is 8x8 but "
                                            r"\S+wide.png is 6x10: pass image_size"):
        load_image_folder(root)
    assert load_image_folder(root, image_size=8).images.shape == (7, 3, 8, 8)


@pytest.mark.parametrize("name, wrap", [("train.tar.gz", "train"), ("flat.tgz", None), ("plain.tar", "test")])
def test_tarball_layouts(tmp_path, name, wrap):
    folder = make_folder(tmp_path / "src")
    archive = make_tar(folder, tmp_path / name, wrap)
    ds = load_tarball(archive)
    images, labels = expected()
    assert ds.classes == sorted(CLASSES)
    assert torch.equal(ds.images, images)
    assert torch.equal(ds.labels, labels)


def test_tarball_matches_folder_and_resizes(tmp_path):
    folder = make_folder(tmp_path / "src", fmt="jpg")
    archive = make_tar(folder, tmp_path / "train.tar.gz", "train")
    a, b = load_tarball(archive, image_size=6), load_image_folder(folder, image_size=6)
    assert a.images.shape == (6, 3, 6, 6)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels) and a.classes == b.classes


def test_parallel_decoding_matches_inline(tmp_path, monkeypatch):
    folder = make_folder(tmp_path / "src", per_class=(5, 4, 6), extras=False)
    archive = make_tar(folder, tmp_path / "train.tar.gz", "train")
    inline = load_tarball(archive, workers=1, cache=False)
    monkeypatch.setattr(folders, "_MIN_PARALLEL", 0)
    monkeypatch.setattr(folders, "_CHUNK_IMAGES", 2)
    pools = []
    make_executor = folders._make_executor
    monkeypatch.setattr(folders, "_make_executor", lambda workers: pools.append(workers) or make_executor(workers))
    pooled = load_tarball(archive, workers=2, cache=False)
    from_folder = load_image_folder(folder, workers=2, cache=False)
    assert pools == [2, 2]  # both really went through a worker pool
    for ds in (pooled, from_folder):
        assert torch.equal(ds.images, inline.images) and torch.equal(ds.labels, inline.labels)


def test_cache_is_reused_and_weights_only(tmp_path, cache_in_tmp, monkeypatch):
    folder = make_folder(tmp_path / "src")
    archive = make_tar(folder, tmp_path / "train.tar.gz", "train")
    first = load_tarball(archive)
    files = list(cache_in_tmp.glob("*.pt"))
    assert len(files) == 1 and files[0].name.startswith("train-")
    blob = torch.load(files[0], weights_only=True)
    assert torch.equal(blob["images"], first.images) and blob["classes"] == first.classes
    assert not list(cache_in_tmp.glob("*.tmp"))

    def boom(*args, **kwargs):
        raise AssertionError("decoded again although cached")

    monkeypatch.setattr(folders, "_decode_chunk", boom)
    again = load_tarball(archive)
    assert torch.equal(again.images, first.images) and again.classes == first.classes
    # Another image_size is another cache entry.
    with pytest.raises(AssertionError, match="decoded again"):
        load_tarball(archive, image_size=4)


def test_cache_key_follows_the_file(tmp_path, cache_in_tmp):
    folder = make_folder(tmp_path / "src", extras=False)
    archive = make_tar(folder, tmp_path / "train.tar.gz", "train")
    assert len(load_tarball(archive)) == 6
    Image.fromarray(pixels(9, 9)).save(folder / "dog" / "new.png")
    make_tar(folder, archive, "train")
    os.utime(archive, ns=(1, 1))  # new mtime (and size) -> new key
    assert len(load_tarball(archive)) == 7
    assert len(list(cache_in_tmp.glob("*.pt"))) == 2


def test_folder_cache_sees_new_files(tmp_path, cache_in_tmp):
    folder = make_folder(tmp_path / "src", extras=False)
    assert len(load_image_folder(folder)) == 6
    assert len(load_image_folder(folder)) == 6
    Image.fromarray(pixels(9, 9)).save(folder / "ant" / "new.png")
    assert len(load_image_folder(folder)) == 7


@pytest.mark.parametrize("garbage", [b"not a torch file", b""])
def test_corrupt_cache_is_rebuilt(tmp_path, cache_in_tmp, garbage):
    folder = make_folder(tmp_path / "src")
    archive = make_tar(folder, tmp_path / "train.tar.gz", "train")
    first = load_tarball(archive)
    (cache_file,) = cache_in_tmp.glob("*.pt")
    cache_file.write_bytes(garbage)
    with pytest.warns(UserWarning, match="cache"):
        rebuilt = load_tarball(archive)
    assert torch.equal(rebuilt.images, first.images)
    assert torch.equal(torch.load(cache_file, weights_only=True)["labels"], first.labels)


def test_foreign_cache_content_is_rebuilt(tmp_path, cache_in_tmp):
    folder = make_folder(tmp_path / "src")
    archive = make_tar(folder, tmp_path / "train.tar.gz", "train")
    first = load_tarball(archive)
    (cache_file,) = cache_in_tmp.glob("*.pt")
    torch.save({"images": torch.zeros(3)}, cache_file)
    with pytest.warns(UserWarning, match="cache"):
        assert torch.equal(load_tarball(archive).images, first.images)


def test_unwritable_cache_still_loads(tmp_path, monkeypatch):
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("x")
    monkeypatch.setenv("DATAFREE_CACHE", str(blocker / "cache"))
    folder = make_folder(tmp_path / "src")
    with pytest.warns(UserWarning, match="DATAFREE_CACHE"):
        assert len(load_image_folder(folder)) == 6


def test_missing_paths(tmp_path):
    missing = tmp_path / "nowhere" / "train.tar.gz"
    with pytest.raises(DatafreeError, match="does not exist") as err:
        load_tarball(missing)
    assert str(missing) in str(err.value) and "data.root" in str(err.value)
    with pytest.raises(DatafreeError, match="does not exist") as err:
        load_image_folder(tmp_path / "nothing")
    assert str(tmp_path / "nothing") in str(err.value)


def test_wrong_kind_of_path(tmp_path):
    folder = make_folder(tmp_path / "src")
    archive = make_tar(folder, tmp_path / "train.tar.gz", "train")
    with pytest.raises(DatafreeError, match="imagefolder"):
        load_tarball(folder)
    with pytest.raises(DatafreeError, match="tarball"):
        load_image_folder(archive)


def test_no_images(tmp_path):
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    (tmp_path / "empty" / "cls" / "a.txt").write_text("x")
    with pytest.raises(DatafreeError, match="no images found"):
        load_image_folder(tmp_path / "empty")


def test_a_class_folder_without_images_is_refused_not_dropped(tmp_path):
    """An empty class folder (or one of notes alone) was left out without a word: a teacher for 3 classes where the
    user had made 4 folders. Refused, naming it, by the loader and by the class count that data.num_classes=auto reads."""
    root = make_folder(tmp_path / "train")
    (root / "emu").mkdir()
    (root / "emu" / "notes.txt").write_text("the scans come next week")
    for read in (load_image_folder, folders.image_folder_classes):
        with pytest.raises(DatafreeError, match=r"^the class folder emu in \S+train holds no images \(image suffixes "
                                                r"read: .*\): add the class's images, or remove the folder \(the 3 others "
                                                r"hold images\).$"):
            read(root)
    wrapped = make_folder(tmp_path / "wrapped" / "top")  # under one top-level folder: the classes' folder is named
    (wrapped / "emu").mkdir()
    with pytest.raises(DatafreeError, match=r"the class folder emu in \S+top holds no images"):
        load_image_folder(tmp_path / "wrapped")


def test_corrupt_image_is_named(tmp_path):
    folder = make_folder(tmp_path / "src", extras=False)
    (folder / "ant" / "broken.png").write_bytes(b"\x89PNG definitely not")
    with pytest.raises(DatafreeError, match="broken.png"):
        load_image_folder(folder)
    archive = make_tar(folder, tmp_path / "train.tar.gz", "train")
    with pytest.raises(DatafreeError, match="broken.png"):
        load_tarball(archive)


def test_truncated_archive(tmp_path):
    folder = make_folder(tmp_path / "src")
    plain = make_tar(folder, tmp_path / "full.tar", "train").read_bytes()
    cut = plain[: 512 * 5 + 100]  # ends inside the first image's data
    archive = tmp_path / "train.tar"
    archive.write_bytes(cut)
    with pytest.raises(DatafreeError, match="tar archive"):
        load_tarball(archive, cache=False)
    gz = tmp_path / "train.tar.gz"
    gz.write_bytes(gzip.compress(cut))
    with pytest.raises(DatafreeError, match="tar archive"):
        load_tarball(gz, cache=False)
    gz.write_bytes(gzip.compress(plain)[:-30])  # the gzip stream itself cut short
    with pytest.raises(DatafreeError, match="tar archive"):
        load_tarball(gz, cache=False)
    gz.write_bytes(gzip.compress(b"plain text, not a tar" * 50))
    with pytest.raises(DatafreeError):
        load_tarball(gz, cache=False)


def test_bad_image_size(tmp_path):
    folder = make_folder(tmp_path / "src")
    for bad in (0, -3, 2.5, True):
        with pytest.raises(DatafreeError, match="image_size"):
            load_image_folder(folder, image_size=bad)


REAL = Path("/work/shared/data/cifar10-jpeg")


@pytest.mark.slow
@pytest.mark.skipif(not (REAL / "train.tar.gz").exists(), reason="shared CIFAR-10 JPEG copy not present")
def test_real_cifar10_jpeg(tmp_path, monkeypatch):
    import datafree.data.folders as folders

    monkeypatch.setenv("DATAFREE_CACHE", str(tmp_path / "cache"))
    hits = []
    read = folders._read_cache

    def counted(file):
        found = read(file)
        hits.append(found is not None)
        return found

    monkeypatch.setattr(folders, "_read_cache", counted)
    ds = load_tarball(REAL / "train.tar.gz")
    again = load_tarball(REAL / "train.tar.gz")
    assert hits == [False, True]  # decoded once, then read from the cache (no wall-time bound: machines differ)
    assert ds.images.shape == (50000, 3, 32, 32)
    assert ds.classes == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    assert ds.class_counts().tolist() == [5000] * 10
    assert torch.equal(again.images, ds.images)
    mean, std = ds.channel_stats()
    assert mean == pytest.approx((0.4914, 0.4822, 0.4465), abs=0.01)
    assert std == pytest.approx((0.2470, 0.2435, 0.2616), abs=0.01)
    test = load_tarball(REAL / "test.tar.gz")
    assert test.class_counts().tolist() == [1000] * 10


_PARENT = os.getpid()
_real_decode = folders._decode_chunk


def _die_in_worker(items, names, image_size, channels):
    if os.getpid() != _PARENT:
        os._exit(1)  # simulate a worker killed for memory
    return _real_decode(items, names, image_size, channels)


@pytest.mark.skipif(not folders._fork_is_safe(), reason="process pool needs fork")
def test_broken_pool_falls_back_to_inline(tmp_path, monkeypatch):
    folder = make_folder(tmp_path / "src", per_class=(3, 3, 3), extras=False)
    archive = make_tar(folder, tmp_path / "train.tar.gz", "train")
    reference = load_tarball(archive, workers=1, cache=False)
    monkeypatch.setattr(folders, "_MIN_PARALLEL", 0)
    monkeypatch.setattr(folders, "_CHUNK_IMAGES", 2)
    monkeypatch.setattr(folders, "_decode_chunk", _die_in_worker)
    with pytest.warns(UserWarning, match="decoding"):
        ds = load_tarball(archive, workers=2, cache=False)
    assert torch.equal(ds.images, reference.images) and torch.equal(ds.labels, reference.labels)


def test_images_too_large_for_memory_are_refused_before_any_is_decoded(tmp_path, monkeypatch):
    """A folder of photographs read at their own size: one line naming data.image_size, before the machine runs out."""
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        for i in range(3):
            Image.new("RGB", (64, 48)).save(tmp_path / label / f"{i}.png")
    decoded = []
    monkeypatch.setattr(folders, "_decode_chunk", lambda *a, **k: decoded.append(1))
    monkeypatch.setattr(folders, "available_memory", lambda: 2 * 6 * 64 * 48 * 3 - 1)  # just under twice the need
    with pytest.raises(DatafreeError, match=r"6 images of 48x64 \(height x width, 3 channel\(s\)\) in .* take 0\.0 GiB as uint8, more "
                                            r"than half of the 0\.0 GiB of memory available: read them smaller with "
                                            r"data.image_size=N"):
        load_image_folder(tmp_path, cache=False)
    assert decoded == []
    monkeypatch.undo()
    monkeypatch.setattr(folders, "available_memory", lambda: 2 * 6 * 16 * 16 * 3)  # at 16 px they fit
    assert load_image_folder(tmp_path, image_size=16, cache=False).images.shape == (6, 3, 16, 16)
