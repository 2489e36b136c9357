"""Labelled image data: loaders into one in-memory :class:`ImageDataset`, and device batching.

Recipes build data sets through :func:`build_dataset`::

    data:
      _target_: datafree.data.build_dataset
      kind: tarball
      root: /work/shared/data/cifar10-jpeg   # holds train.tar.gz and test.tar.gz
      split: train
"""
from __future__ import annotations

from pathlib import Path

import torch

from datafree.data.dataset import ImageDataset
from datafree.data.folders import IMAGE_SUFFIXES, cache_dir, load_image_folder, load_tarball
from datafree.data.loader import DeviceBatches
from datafree.data.shapes import SHAPE_CLASSES, make_shapes
from datafree.data.torchvision_sets import load_cifar
from datafree.errors import DatafreeError

__all__ = [
    "DATASET_KINDS",
    "DeviceBatches",
    "IMAGE_SUFFIXES",
    "ImageDataset",
    "SHAPE_CLASSES",
    "build_dataset",
    "cache_dir",
    "load_cifar",
    "load_image_folder",
    "load_tarball",
    "make_shapes",
    "resize_dataset",
]

DATASET_KINDS = ("tarball", "imagefolder", "cifar10", "cifar100", "shapes")
_SPLITS = ("train", "test")
# Default sizes of the generated shapes splits when n is not given.
_SHAPES_DEFAULT_N = {"train": 10_000, "test": 2_000}


def build_dataset(
    kind: str,
    split: str = "train",
    path: str | None = None,
    root: str | None = None,
    image_size: int | None = None,
    download: bool = False,
    n: int | None = None,
    seed: int = 0,
    num_classes: int = 10,
) -> ImageDataset:
    """Build a labelled image set; the one entry point recipes use (``_target_: datafree.data.build_dataset``).

    kind:
      * ``tarball``: ``path`` to a .tar.gz/.tgz/.tar of class folders, or ``root`` holding ``<split>.tar.gz``.
      * ``imagefolder``: ``path`` to a folder of class folders, or ``root`` holding ``<split>/``.
      * ``cifar10`` / ``cifar100``: torchvision's copy under ``root`` (default: the datafree
        cache folder); ``download=True`` fetches it.
      * ``shapes``: ``n`` generated images (default 10,000 train / 2,000 test) of ``image_size``
        (default 16) with ``num_classes`` classes; train and test use different seeds.

    ``image_size`` resizes every image to image_size x image_size (None keeps the native size).
    """
    name = str(kind).lower()
    if name not in DATASET_KINDS:
        raise DatafreeError(f"unknown data kind {kind!r}: set data.kind to one of {', '.join(DATASET_KINDS)}.")
    split = str(split)

    if name in ("tarball", "imagefolder"):
        source = _resolve_source(name, split, path, root)
        if name == "tarball":
            return load_tarball(source, image_size=image_size)
        return load_image_folder(source, image_size=image_size)

    if split not in _SPLITS:
        raise DatafreeError(f"unknown split {split!r} for data kind {name}: set data.split to train or test.")

    if name in ("cifar10", "cifar100"):
        folder = Path(root).expanduser() if root is not None else cache_dir() / "torchvision"
        dataset = load_cifar(name, folder, train=split == "train", download=download)
        if image_size is not None and image_size != dataset.image_size:
            dataset = resize_dataset(dataset, image_size)
        return dataset

    # shapes
    if n is None:
        n = _SHAPES_DEFAULT_N[split]
    # Offset the seed by split so the test images are new draws: seeds 2s / 2s+1 never collide.
    split_seed = 2 * int(seed) + (0 if split == "train" else 1)
    return make_shapes(int(n), image_size=16 if image_size is None else int(image_size), seed=split_seed,
                       num_classes=int(num_classes))


def _resolve_source(kind: str, split: str, path: str | None, root: str | None) -> Path:
    if path is not None:
        return Path(path).expanduser()
    if root is None:
        example = "train.tar.gz" if kind == "tarball" else "train/"
        raise DatafreeError(
            f"data kind {kind} needs a location: set data.path=... to the {'archive' if kind == 'tarball' else 'folder'} "
            f"itself, or data.root=... to the folder holding {example} (and the test split)."
        )
    folder = Path(root).expanduser()
    if kind == "imagefolder":
        candidate = folder / split
        if not candidate.is_dir():
            raise DatafreeError(
                f"data path {candidate} does not exist: set data.root=... to the folder holding {split}/ "
                f"(one sub-folder per class), or data.path=... to the split's folder itself."
            )
        return candidate
    for suffix in (".tar.gz", ".tgz", ".tar"):
        candidate = folder / f"{split}{suffix}"
        if candidate.is_file():
            return candidate
    raise DatafreeError(
        f"data path {folder / (split + '.tar.gz')} does not exist: set data.root=... to the folder holding "
        f"{split}.tar.gz (train.tar.gz and test.tar.gz), or data.path=... to the archive itself."
    )


def resize_dataset(dataset: ImageDataset, image_size: int, chunk: int = 4096) -> ImageDataset:
    """Bilinear (antialiased) resize of every image to image_size x image_size, in chunks."""
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise DatafreeError(f"image_size must be a positive int, got {image_size!r}: set data.image_size=32 (say).")
    n, c = len(dataset), dataset.channels
    out = torch.empty(n, c, image_size, image_size, dtype=torch.uint8)
    for start in range(0, n, chunk):
        x = dataset.images[start : start + chunk].float()
        x = torch.nn.functional.interpolate(x, size=(image_size, image_size), mode="bilinear", antialias=True,
                                            align_corners=False)
        out[start : start + chunk] = x.clamp_(0, 255).round_().to(torch.uint8)
    return ImageDataset(images=out, labels=dataset.labels.clone(), classes=list(dataset.classes))
