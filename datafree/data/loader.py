"""Batches straight from device memory: no DataLoader, no per-sample Python, no host syncs.

The whole uint8 data set is moved to the device once (50k CIFAR images are 150 MB);
each batch is gathered, optionally augmented (random crop with zero padding and
horizontal flip, one vectorised gather for the whole batch) and converted to float32
in [0, 1] on the device.
"""
from __future__ import annotations

from typing import Iterator

import torch

from datafree.data.augment import resized_crop_flip, shift_flip
from datafree.data.dataset import ImageDataset
from datafree.errors import DatafreeError
from datafree.ops.pixels import dequantise


# How training batches are cropped: a padded random crop (CIFAR's, small images) or a random-resized crop (larger).
CROPS = ("shift", "resized")
RESIZED_FROM = 64  # crop=auto: images this large (px, the shorter side) and larger take the random-resized crop


def crop_for(setting: str, image_size: int) -> str:
    """The crop a recipe's ``data.crop`` asks for: ``auto`` picks by the image size (``RESIZED_FROM``)."""
    if setting == "auto":
        return "resized" if image_size >= RESIZED_FROM else "shift"
    return setting


class DeviceBatches:
    """Iterate ``(images, labels)`` batches of an :class:`ImageDataset` held on ``device``.

    ``images`` are float32 in [0, 1], shape B x C x H x W (channels-last memory format
    when ``channels_last``); ``labels`` are int64. With ``shuffle`` every epoch visits a
    fresh permutation; with ``augment`` each image is flipped left-right with probability
    1/2 (when ``flip``) and cropped back to H x W from the image padded by
    ``crop_padding`` zero pixels on every side at a random offset (``crop="shift"``), or cropped to a random
    box of 25-100% of its area and resized back (``crop="resized"``, for 64 px and up). Given a ``seed``, a
    private generator on the device drives all randomness, so runs repeat; otherwise
    the device's global generator is used (seed it with ``torch.manual_seed``).
    ``targets`` (one row per image, e.g. a synthetic set's stored teacher logits) are
    yielded in place of the labels.

    ``shard=(rank, world)`` (torchrun): the rank's share. Training batches (``shuffle``, with
    ``drop_last``) are the rank's rows of a global batch of ``batch_size x world`` images, in
    the same order and with the same augmentation draws as one process with that batch size
    (give every rank the same ``seed``); evaluation batches cover every world-th image from ``rank``.
    """

    def __init__(
        self,
        dataset: ImageDataset,
        batch_size: int,
        device: str | torch.device = "cpu",
        shuffle: bool = False,
        augment: bool = False,
        drop_last: bool = False,
        crop_padding: int = 4,
        flip: bool = True,
        crop: str = "shift",
        seed: int | None = None,
        channels_last: bool = False,
        targets: torch.Tensor | None = None,
        shard: tuple[int, int] = (0, 1),
    ):
        if not isinstance(dataset, ImageDataset):
            raise DatafreeError(
                f"DeviceBatches needs an ImageDataset, got {type(dataset).__name__}: build one with datafree.data.build_dataset."
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise DatafreeError(f"batch_size must be a positive int, got {batch_size!r}: set e.g. batch_size=256.")
        if isinstance(crop_padding, bool) or not isinstance(crop_padding, int) or crop_padding < 0:
            raise DatafreeError(f"crop_padding must be an int >= 0, got {crop_padding!r}: use 4 for CIFAR, 0 for no crop.")
        if crop not in CROPS:
            raise DatafreeError(f"crop must be one of {', '.join(CROPS)}, got {crop!r}: 'shift' (a padded random crop, "
                                "small images) or 'resized' (a random-resized crop, 64 px and up).")
        if len(dataset) == 0:
            raise DatafreeError("DeviceBatches got an empty data set: load at least one image.")
        rank, world = (int(v) for v in shard)
        if not 0 <= rank < world:
            raise ValueError(f"shard=(rank, world) needs 0 <= rank < world, got {tuple(shard)}")
        if world > 1 and shuffle and not drop_last:
            raise ValueError("a sharded training stream (shuffle) needs drop_last=True: every rank takes a full share")
        self.rank, self.world = rank, world
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.shuffle = bool(shuffle)
        self.augment = bool(augment)
        self.drop_last = bool(drop_last)
        self.crop_padding = crop_padding
        self.flip = bool(flip)
        self.crop = crop
        self.channels_last = bool(channels_last)
        self.classes = list(dataset.classes)
        if targets is not None and targets.shape[0] != len(dataset):
            raise DatafreeError(f"DeviceBatches got {targets.shape[0]} targets for {len(dataset)} images: give one row per image.")
        images, labels = dataset.images, (dataset.labels if targets is None else targets)
        if world > 1 and not shuffle:  # evaluation: each rank holds only its share
            images, labels = images[rank::world], labels[rank::world]
        self.num_samples = images.shape[0]
        if self.drop_last and self.num_samples < batch_size * self._ranks_per_batch:
            raise DatafreeError(
                f"drop_last=True with batch_size={batch_size}{f' on {world} ranks' if world > 1 else ''} but only "
                f"{self.num_samples} images leaves no batch: lower batch_size or set drop_last=False."
            )
        # Moved once, kept as uint8; each batch is converted to float on the device.
        self.images = images.to(self.device)
        self.labels = labels.to(self.device)
        self.generator = None
        if seed is not None:
            self.generator = torch.Generator(device=self.device)
            self.generator.manual_seed(int(seed))
        # Where the epoch in progress stands, for state_dict(); _resume is a loaded position not yet used.
        self._order: torch.Tensor | None = None
        self._next = 0
        self._resume: tuple[torch.Tensor | None, int] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def _ranks_per_batch(self) -> int:
        """How many ranks share one batch drawn from the permutation: all of them for training, else one."""
        return self.world if self.shuffle else 1

    def __len__(self) -> int:
        size = self.batch_size * self._ranks_per_batch
        if self.drop_last:
            return self.num_samples // size
        return -(-self.num_samples // size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order, first = None, 0
        if self._resume is not None:
            (order, first), self._resume = self._resume, None
        elif self.shuffle:
            order = torch.randperm(self.num_samples, device=self.device, generator=self.generator)
        self._order = order
        share = self.rank * self.batch_size if self._ranks_per_batch > 1 else 0
        for b in range(first, len(self)):
            start = b * self.batch_size * self._ranks_per_batch + share
            stop = min(start + self.batch_size, self.num_samples)
            if order is None:
                x = self.images[start:stop]
                y = self.labels[start:stop]
            else:
                idx = order[start:stop]
                x = self.images.index_select(0, idx)
                y = self.labels.index_select(0, idx)
            if self.augment and self.crop == "shift":
                x = self._augment(x, share)  # on uint8: a quarter of the memory traffic of float
            x = dequantise(x)
            if self.augment and self.crop == "resized":
                x = self._augment(x, share)  # interpolated: on float
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            self._next = b + 1  # every random draw for this batch is made: a state taken now continues after it
            yield x, y
        self._order, self._next = None, 0

    def state_dict(self) -> dict:
        """The generator state, this epoch's order and the next batch: iteration continues exactly there."""
        return {"generator": None if self.generator is None else self.generator.get_state(),
                "order": self._order, "next": self._next}

    def load_state_dict(self, state: dict) -> None:
        if state.get("generator") is not None and self.generator is not None:
            self.generator.set_state(state["generator"])
        order = state.get("order")
        if order is not None or state.get("next"):
            self._resume = (None if order is None else order.to(self.device), int(state["next"]))

    def draw(self, count: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
        """``count`` batches of ``batch_size`` images drawn at random (with replacement) and augmented as training
        batches are, every draw from ``generator`` (on the device): the stream's own order, position and generator
        stay as they were. For re-estimating BatchNorm statistics on what the student trains on."""
        for _ in range(count):
            idx = torch.randint(self.num_samples, (min(self.batch_size, self.num_samples),), device=self.device,
                                generator=generator)
            x = self.images.index_select(0, idx)
            if self.augment and self.crop == "shift":
                x = self._augment_with(x, generator, None)
            x = dequantise(x)
            if self.augment and self.crop == "resized":
                x = self._augment_with(x, generator, None)
            yield x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _augment(self, x: torch.Tensor, share: int = 0) -> torch.Tensor:
        """The stream's augmentation of a batch: its generator, and under torchrun its rank's part of the draws."""
        part = (share, self.batch_size * self.world) if self._ranks_per_batch > 1 else None
        return self._augment_with(x, self.generator, part)

    def _augment_with(self, x: torch.Tensor, generator: torch.Generator | None,
                      part: tuple[int, int] | None) -> torch.Tensor:
        """Random flip + padded random crop of a uint8 batch (one pad and one gather), or + random-resized crop of a
        float batch (one grid_sample); no per-sample loop."""
        if self.crop == "resized":
            return resized_crop_flip(x, flip=self.flip, generator=generator, part=part)
        return shift_flip(x, self.crop_padding, self.flip, "zeros", generator, part)

    def __repr__(self) -> str:
        return (
            f"DeviceBatches(n={self.num_samples}, batch_size={self.batch_size}, batches={len(self)}, "
            f"device={self.device}, shuffle={self.shuffle}, augment={self.augment})"
        )
