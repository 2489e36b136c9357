"""CIFAR-10 / CIFAR-100 through ``torchvision.datasets`` (the python-pickle release)."""
from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import torch

from datafree.data.dataset import ImageDataset
from datafree.errors import DatafreeError

_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}


def load_cifar(name: str, root: str | os.PathLike, train: bool, download: bool = False) -> ImageDataset:
    """Load CIFAR-10 or CIFAR-100 from ``root`` (the folder that holds ``cifar-10-batches-py``).

    With ``download=True`` torchvision fetches the data into ``root`` first if it is
    missing (needs internet). Returns N x 3 x 32 x 32 uint8 images.
    """
    key = str(name).lower().replace("-", "").replace("_", "")
    if key not in _FOLDERS:
        raise DatafreeError(f"unknown torchvision data set {name!r}: choose cifar10 or cifar100.")
    from torchvision import datasets

    cls = datasets.CIFAR10 if key == "cifar10" else datasets.CIFAR100
    root = Path(root).expanduser()
    split = "train" if train else "test"
    try:
        with _undone_on_failure(root) if download else contextlib.nullcontext():
            ds = cls(root=str(root), train=bool(train), download=bool(download))
    except RuntimeError as exc:
        if download:
            raise DatafreeError(
                f"{key} ({split}) under {root} is still missing or corrupt after data.download=true ({exc}): "
                f"delete {root / _FOLDERS[key]} and retry, or set data.root to a folder holding a good copy."
            ) from None
        raise DatafreeError(
            f"{key} ({split}) is not under {root} (expected {root / _FOLDERS[key]}): add data.download=true to fetch "
            f"it (needs internet), or set data.root to the folder that holds {_FOLDERS[key]}."
        ) from None
    except OSError as exc:  # URLError, connection refused, permissions, ...
        raise DatafreeError(
            f"could not download {key} into {root} ({type(exc).__name__}: {exc}): check the internet connection and "
            f"that {root} is writable, or copy {_FOLDERS[key]} there from a machine that has it (data.root chooses "
            "the folder)."
        ) from None
    images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # N x H x W x C -> N x C x H x W
    labels = torch.as_tensor(ds.targets, dtype=torch.int64)
    return ImageDataset(images=images, labels=labels, classes=list(ds.classes))


@contextlib.contextmanager
def _undone_on_failure(root: Path):
    """A download that fails leaves nothing behind: what it created in ``root`` (an archive cut short, a half
    extracted folder) and the folders made for it are removed again; what was there before stays."""
    created = [folder for folder in (root, *root.parents) if not folder.exists()]  # deepest first
    before = set(root.iterdir()) if root.is_dir() else set()
    try:
        yield
    except BaseException:
        for path in (set(root.iterdir()) - before) if root.is_dir() else ():
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        for folder in created:
            try:
                folder.rmdir()
            except OSError:  # not empty: something else put files there meanwhile
                break
        raise
