"""Labelled image data: loaders into one in-memory :class:`ImageDataset`, and device batching.

Recipes build data sets through :func:`build_dataset`::

    data:
      _target_: datafree.data.build_dataset
      kind: tarball
      root: /data/cifar10-jpeg   # holds train.tar.gz and test.tar.gz
      split: train
"""
from __future__ import annotations

from pathlib import Path

import torch

from datafree.data.dataset import CHANNEL_COUNTS, ImageDataset
from datafree.data.folders import (IMAGE_SUFFIXES, TAR_SUFFIXES, cache_dir, image_folder_classes, load_image_folder,
                                   load_tarball)
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
    "class_names",
    "count_classes",
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
    channels: int | None = None,
) -> ImageDataset:
    """Build a labelled image set; the one entry point recipes use (``_target_: datafree.data.build_dataset``).

    kind:
      * ``tarball``: ``root`` holding ``<split>.tar.gz`` (or ``path`` to one .tar.gz/.tgz/.tar of class folders).
      * ``imagefolder``: ``root`` holding ``<split>/`` (or ``path`` to one folder of class folders).
      * ``cifar10`` / ``cifar100``: torchvision's copy under ``root`` (default: the datafree
        cache folder); ``download=True`` fetches it.
      * ``shapes``: ``n`` generated images (default 10,000 train / 2,000 test) of ``image_size``
        (default 16) with ``num_classes`` classes; train and test use different seeds.

    ``image_size`` resizes every image to image_size x image_size (None keeps the native size).
    ``channels`` 1, 3 or 4 gives grey, RGB or RGBA images; None keeps the images' own (image files:
    grey when every image is grey, RGBA when every image has alpha, else RGB).
    """
    name = str(kind).lower()
    if name not in DATASET_KINDS:
        raise DatafreeError(f"unknown data kind {kind!r}: choose one of {', '.join(DATASET_KINDS)}.")
    if channels is not None and channels not in CHANNEL_COUNTS:
        raise DatafreeError(f"data.channels must be null (the images' own), 1 (grey), 3 (RGB) or 4 (RGBA), got {channels!r}.")
    split = str(split)

    if name in ("tarball", "imagefolder"):
        source = _resolve_source(name, split, path, root)
        if name == "tarball":
            return load_tarball(source, image_size=image_size, channels=channels)
        return load_image_folder(source, image_size=image_size, channels=channels)

    if split not in _SPLITS:
        raise DatafreeError(f"unknown split {split!r} for data kind {name}: use train or test.")

    if name in ("cifar10", "cifar100"):
        folder = Path(root).expanduser() if root is not None else cache_dir() / "torchvision"
        dataset = load_cifar(name, folder, train=split == "train", download=download)
        if image_size is not None and image_size != dataset.image_size:
            dataset = resize_dataset(dataset, image_size)
    else:  # shapes
        if n is None:
            n = _SHAPES_DEFAULT_N[split]
        # Offset the seed by split so the test images are new draws: seeds 2s / 2s+1 never collide.
        split_seed = 2 * int(seed) + (0 if split == "train" else 1)
        dataset = make_shapes(int(n), image_size=16 if image_size is None else int(image_size), seed=split_seed,
                              num_classes=int(num_classes))
    return dataset if channels is None else dataset.with_channels(channels)


def class_names(split: str, path: str | None = None, root: str | None = None) -> list[str]:
    """The classes an ImageFolder split holds (``path``, or ``root``'s ``<split>/``), from its folder names alone."""
    return image_folder_classes(_resolve_source("imagefolder", split, path, root))


def count_classes(split: str, path: str | None = None, root: str | None = None) -> int:
    """How many classes an ImageFolder split holds: ``data.num_classes=auto``."""
    return len(class_names(split, path, root))


def _resolve_source(kind: str, split: str, path: str | None, root: str | None) -> Path:
    """The file or folder of one split: ``path`` itself, or ``root``'s ``<split>.tar.gz`` / ``<split>/``."""
    layout = "train.tar.gz and test.tar.gz" if kind == "tarball" else "train/ and test/ (one sub-folder per class in each)"
    if path is not None:
        return Path(path).expanduser()
    if root is None:
        raise DatafreeError(f"data kind {kind} needs a location: set data.root to the folder holding {layout}.")
    folder = Path(root).expanduser()
    if not folder.exists():
        raise DatafreeError(f"data.root {folder} does not exist: set data.root to the folder holding {layout}.")
    if not folder.is_dir():
        raise DatafreeError(f"data.root {folder} is a file, not a folder: set data.root to the folder holding {layout}.")
    candidates = [folder / split] if kind == "imagefolder" else [folder / f"{split}{suffix}" for suffix in TAR_SUFFIXES]
    for candidate in candidates:
        if candidate.exists():
            return candidate
    missing = f"{candidates[0].name}/ folder" if kind == "imagefolder" else candidates[0].name
    raise DatafreeError(f"data.root {folder} holds no {missing}: set data.root to the folder holding {layout}.")


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
