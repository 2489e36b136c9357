"""The in-memory labelled image set every loader returns."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from datafree.errors import DatafreeError

# Images per step of channel_stats: bounds the temporary int64 copy to ~25 MB at 32x32x3.
_STATS_CHUNK = 1024
# Channel counts images can be converted between: grey, RGB, RGB + alpha.
CHANNEL_COUNTS = (1, 3, 4)


@dataclass
class ImageDataset:
    """Whole data set as tensors: ``images`` uint8 N x C x H x W on the CPU, ``labels`` int64 N.

    ``classes[k]`` is the name of label ``k``. Small enough sets (CIFAR-scale) live
    entirely in memory; :class:`datafree.data.DeviceBatches` moves them to the GPU once.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]

    def __post_init__(self) -> None:
        images, labels = self.images, self.labels
        if not isinstance(images, torch.Tensor) or not isinstance(labels, torch.Tensor):
            raise DatafreeError(
                f"ImageDataset needs tensors, got images={type(images).__name__}, labels={type(labels).__name__}: "
                "pass torch.Tensor objects (torch.from_numpy(...) converts arrays)."
            )
        if images.dtype != torch.uint8:
            raise DatafreeError(
                f"ImageDataset.images must be uint8 (0..255), got {images.dtype}: "
                "convert with (x.clamp(0, 1) * 255).round().to(torch.uint8)."
            )
        if images.dim() != 4:
            raise DatafreeError(
                f"ImageDataset.images must be N x C x H x W, got shape {tuple(images.shape)}: "
                "add a channel axis (x.unsqueeze(1)) or permute N x H x W x C with x.permute(0, 3, 1, 2)."
            )
        if images.device.type != "cpu" or labels.device.type != "cpu":
            raise DatafreeError(
                f"ImageDataset keeps its tensors on the CPU, got images on {images.device}, labels on {labels.device}: "
                "pass .cpu() tensors; DeviceBatches moves them to the GPU."
            )
        if labels.dtype != torch.int64 or labels.dim() != 1:
            raise DatafreeError(
                f"ImageDataset.labels must be a 1-D int64 tensor, got {labels.dtype} with shape {tuple(labels.shape)}: "
                "convert with labels.reshape(-1).long()."
            )
        if labels.numel() != images.shape[0]:
            raise DatafreeError(
                f"ImageDataset has {images.shape[0]} images but {labels.numel()} labels: give one label per image."
            )
        if images.shape[1] < 1 or images.shape[2] < 1 or images.shape[3] < 1:
            raise DatafreeError(f"ImageDataset.images has an empty axis (shape {tuple(images.shape)}): pass real images.")
        classes = self.classes
        if isinstance(classes, (str, bytes)) or not all(isinstance(c, str) for c in classes):
            raise DatafreeError(f"ImageDataset.classes must be a list of str, got {classes!r}: pass class names.")
        self.classes = classes = list(classes)
        if not classes:
            raise DatafreeError("ImageDataset.classes is empty: name at least one class.")
        if len(set(classes)) != len(classes):
            raise DatafreeError(f"ImageDataset.classes has duplicate names {classes}: make every class name unique.")
        if labels.numel():
            low, high = int(labels.min()), int(labels.max())
            if low < 0 or high >= len(classes):
                raise DatafreeError(
                    f"ImageDataset labels run from {low} to {high} but there are {len(classes)} classes: "
                    f"labels must lie in 0..{len(classes) - 1}; add the missing class names or fix the labels."
                )

    # ------------------------------------------------------------------ shape
    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_size(self) -> int:
        """Height in pixels: the side of the square images a given ``image_size`` makes (:attr:`height_width` for
        images read at their own size, which need not be square)."""
        return int(self.images.shape[2])

    @property
    def height_width(self) -> tuple[int, int]:
        return int(self.images.shape[2]), int(self.images.shape[3])

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __repr__(self) -> str:
        return (
            f"ImageDataset(n={len(self)}, channels={self.channels}, size={self.images.shape[2]}x{self.images.shape[3]}, "
            f"classes={self.num_classes})"
        )

    # ------------------------------------------------------------------ stats
    def channel_stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and (population) std over all pixels, in [0, 1] units.

        Accumulates exact integer sums chunk by chunk and finishes in float64, so
        50k CIFAR images need only a small temporary buffer and lose no precision.
        """
        n = len(self)
        if n == 0:
            raise DatafreeError("channel_stats() of an empty ImageDataset: load at least one image first.")
        c = self.channels
        total = torch.zeros(c, dtype=torch.float64)
        total_sq = torch.zeros(c, dtype=torch.float64)
        for start in range(0, n, _STATS_CHUNK):
            chunk = self.images[start : start + _STATS_CHUNK].to(torch.int64)
            # Integer sums are exact (255^2 * 1024 * H * W fits easily in int64).
            total += chunk.sum(dim=(0, 2, 3)).to(torch.float64)
            total_sq += (chunk * chunk).sum(dim=(0, 2, 3)).to(torch.float64)
        count = float(n * self.images.shape[2] * self.images.shape[3])
        mean = total / count
        var = (total_sq / count - mean * mean).clamp_min(0.0)
        mean01 = tuple(float(m) / 255.0 for m in mean)
        std01 = tuple(math.sqrt(float(v)) / 255.0 for v in var)
        return mean01, std01

    def class_counts(self) -> torch.Tensor:
        """Number of images per class (int64, length num_classes)."""
        return torch.bincount(self.labels, minlength=self.num_classes)

    # ------------------------------------------------------------------ channels
    def with_channels(self, channels: int) -> "ImageDataset":
        """The same images with ``channels`` channels, converted as PIL's ``Image.convert`` would.

        Grey to RGB repeats the channel; RGB to grey is ITU-R 601 luminance (L = 0.299 R + 0.587 G
        + 0.114 B); alpha is dropped, or added fully opaque. Returns ``self`` when nothing changes.
        """
        return self if channels == self.channels else ImageDataset(
            images=convert_channels(self.images, channels), labels=self.labels, classes=list(self.classes))

    # ------------------------------------------------------------------ subsets
    def sample(self, n: int, seed: int = 0) -> "ImageDataset":
        """At most ``n`` images drawn at random, in a repeatable random order (``seed``): what a measurement on
        "the first n images" should take, since data sets come stored by class (CIFAR-10's first 2,000 test
        images are airplanes and automobiles)."""
        return self.subset(torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n])

    def relabelled(self, classes: Sequence[str]) -> "ImageDataset":
        """The same images labelled by where their class names stand in ``classes``, which holds every one of this
        set's (a test split without some class of its training split: labels follow names, not positions)."""
        classes = list(classes)
        unknown = [c for c in self.classes if c not in classes]
        if unknown:
            raise DatafreeError(f"relabelled() got classes {classes[:8]} without {unknown[:5]}: give a list holding "
                                "every class of the data set.")
        where = torch.tensor([classes.index(c) for c in self.classes], dtype=torch.int64)
        return ImageDataset(self.images, where[self.labels], classes)

    def subset(self, indices: Sequence[int] | torch.Tensor | slice) -> "ImageDataset":
        """A new data set holding the chosen images (copies; same class list).

        ``indices`` may be a slice, a sequence/tensor of integer indices or a boolean mask.
        """
        n = len(self)
        if isinstance(indices, slice):
            idx = torch.arange(n)[indices]
        else:
            idx = torch.as_tensor(indices)
            if idx.numel() == 0:
                idx = idx.to(torch.int64)  # [] arrives as float32
            if idx.dtype == torch.bool:
                if idx.shape != (n,):
                    raise DatafreeError(
                        f"subset() got a boolean mask of shape {tuple(idx.shape)} for {n} images: give one flag per image."
                    )
                idx = idx.nonzero().reshape(-1)
            elif idx.dtype.is_floating_point or idx.dtype.is_complex:
                raise DatafreeError(f"subset() needs integer indices, got {idx.dtype}: pass ints or a boolean mask.")
            idx = idx.reshape(-1).to(torch.int64)
            if idx.numel() and (int(idx.min()) < -n or int(idx.max()) >= n):
                raise DatafreeError(
                    f"subset() index out of range: indices run from {int(idx.min())} to {int(idx.max())} "
                    f"but the data set has {n} images; use indices in 0..{n - 1}."
                )
            idx = torch.where(idx < 0, idx + n, idx)
        return ImageDataset(
            images=self.images.index_select(0, idx),
            labels=self.labels.index_select(0, idx),
            classes=list(self.classes),
        )


def convert_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """uint8 N x C x H x W images converted to ``channels`` (1, 3 or 4) channels (see ImageDataset.with_channels)."""
    have = int(images.shape[1])
    if channels not in CHANNEL_COUNTS or have not in CHANNEL_COUNTS:
        raise DatafreeError(
            f"images can be converted between 1 (grey), 3 (RGB) and 4 (RGBA) channels, not from {have} to {channels}: "
            "set data.channels to one of 1, 3, 4 (or null to keep the images' own)."
        )
    if channels == have:
        return images
    if have == 1:
        colour = images.expand(-1, 3, -1, -1)
    else:
        colour = images[:, :3]
    if channels == 1:
        # PIL's fixed-point luminance, so converted tensors equal images decoded with convert("L").
        weights = torch.tensor([19595, 38470, 7471], dtype=torch.int32).view(1, 3, 1, 1)
        grey = (colour.to(torch.int32) * weights).sum(1, keepdim=True).add_(1 << 15).bitwise_right_shift_(16)
        return grey.to(torch.uint8)
    if channels == 3:
        return colour.contiguous()
    alpha = torch.full_like(images[:, :1], 255)
    return torch.cat([colour, alpha], dim=1)
