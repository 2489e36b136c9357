import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from datafree.data import DATASET_KINDS, build_dataset, load_cifar, resize_dataset
from datafree.errors import DatafreeError


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("DATAFREE_CACHE", str(tmp_path / "cache"))


def tiny_split(root, split, n_per_class=2):
    for k, name in enumerate(["b", "a"]):
        (root / split / name).mkdir(parents=True, exist_ok=True)
        for j in range(n_per_class):
            Image.fromarray(np.full((6, 6, 3), 10 * k + j, np.uint8)).save(root / split / name / f"{j}.png")
    return root / split


def test_shapes_dispatch():
    train = build_dataset("shapes", "train", n=30, seed=1)
    test = build_dataset("shapes", split="test", n=30, seed=1)
    assert len(train) == 30 and train.image_size == 16 and train.num_classes == 10
    assert not torch.equal(train.images, test.images)
    assert torch.equal(build_dataset("shapes", "train", n=30, seed=1).images, train.images)
    small = build_dataset("shapes", n=12, image_size=24, num_classes=3)
    assert small.images.shape == (12, 3, 24, 24) and small.num_classes == 3
    assert len(build_dataset("shapes", "test")) == 2000


def test_imagefolder_dispatch(tmp_path):
    folder = tiny_split(tmp_path, "train")
    tiny_split(tmp_path, "test", n_per_class=1)
    by_path = build_dataset("imagefolder", path=str(folder))
    assert by_path.classes == ["a", "b"] and len(by_path) == 4
    assert len(build_dataset("imagefolder", "test", root=str(tmp_path))) == 2
    assert build_dataset("imagefolder", root=str(tmp_path), image_size=3).image_size == 3


def test_tarball_dispatch(tmp_path):
    for split, n in (("train", 3), ("test", 1)):
        folder = tiny_split(tmp_path / "src", split, n)
        with tarfile.open(tmp_path / f"{split}.tar.gz", "w:gz") as tar:
            tar.add(folder, arcname=split)
    assert len(build_dataset("tarball", "train", root=str(tmp_path))) == 6
    assert len(build_dataset("tarball", "test", root=str(tmp_path))) == 2
    assert len(build_dataset("TARBALL", path=str(tmp_path / "test.tar.gz"))) == 2


def test_missing_locations(tmp_path):
    with pytest.raises(DatafreeError, match="data.root") as err:
        build_dataset("tarball", "train", root=str(tmp_path))
    assert f"{tmp_path} holds no train.tar.gz" in str(err.value)
    with pytest.raises(DatafreeError, match="does not exist"):
        build_dataset("tarball", path=str(tmp_path / "x.tar.gz"))
    with pytest.raises(DatafreeError, match="set data.root to the folder holding train/ and test/"):
        build_dataset("imagefolder")
    with pytest.raises(DatafreeError, match="holds no test"):
        build_dataset("imagefolder", "test", root=str(tmp_path))
    with pytest.raises(DatafreeError, match="does not exist"):
        build_dataset("imagefolder", "test", root=str(tmp_path / "nowhere"))
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(DatafreeError, match="is a file, not a folder"):
        build_dataset("imagefolder", "test", root=str(tmp_path / "a_file"))


def test_unknown_kind_and_split():
    with pytest.raises(DatafreeError) as err:
        build_dataset("mnist")
    assert "mnist" in str(err.value)
    for kind in DATASET_KINDS:
        assert kind in str(err.value)
    with pytest.raises(DatafreeError, match="split"):
        build_dataset("shapes", "validation", n=5)


def test_cifar_missing_without_download(tmp_path):
    with pytest.raises(DatafreeError, match="data.download=true") as err:
        build_dataset("cifar10", "train", root=str(tmp_path))
    assert str(tmp_path) in str(err.value)
    with pytest.raises(DatafreeError, match="cifar-100-python"):
        load_cifar("cifar100", tmp_path, train=False)
    with pytest.raises(DatafreeError, match="cifar10 or cifar100"):
        load_cifar("svhn", tmp_path, train=True)


def test_resize_dataset():
    ds = build_dataset("shapes", n=6, image_size=16)
    small = resize_dataset(ds, 8)
    assert small.images.shape == (6, 3, 8, 8) and torch.equal(small.labels, ds.labels)
    flat = build_dataset("shapes", n=2)
    flat.images[:] = 90
    assert resize_dataset(flat, 5).images.eq(90).all()


def test_hydra_instantiate():
    instantiate = pytest.importorskip("hydra.utils").instantiate

    ds = instantiate({"_target_": "datafree.data.build_dataset", "kind": "shapes", "split": "test", "n": 20, "seed": 3})
    assert len(ds) == 20 and ds.num_classes == 10


def test_a_failed_download_leaves_nothing_behind(tmp_path, monkeypatch):
    import urllib.error

    from torchvision.datasets import cifar

    def cut_off(url, download_root, filename, md5):  # torchvision makes the folder and starts the archive
        os.makedirs(download_root, exist_ok=True)
        Path(download_root, filename).write_bytes(b"half an archive")
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(cifar, "download_and_extract_archive", cut_off)
    with pytest.raises(DatafreeError, match="could not download cifar10"):
        load_cifar("cifar10", tmp_path / "new" / "torchvision", train=True, download=True)
    assert not (tmp_path / "new").exists()  # the folders it made, too
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("the user's")
    with pytest.raises(DatafreeError, match="could not download cifar10"):
        load_cifar("cifar10", tmp_path / "mine", train=True, download=True)
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]
