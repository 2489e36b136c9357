"""A synthetic data set as endless training batches on the device: (images, stored teacher logits).

Shards go to the device in windows of at most ``device_budget_mb``; each window is batched
by :class:`~datafree.data.DeviceBatches`, so the student sees the same batched crop-and-flip
augmentation as on real data. A set that fits in one window is loaded once and reshuffled
every epoch; a larger one visits its shards in a new random order every epoch, a window at
a time. :meth:`SyntheticBatches.state_dict` holds the position, so a resumed run continues
with the very next batch.
"""
from __future__ import annotations

from typing import Iterator

import torch

from datafree.data import DeviceBatches
from datafree.data.dataset import ImageDataset
from datafree.errors import DatafreeError
from datafree.export.reader import SyntheticSet
from datafree.export.samples import Samples
from datafree.export.shards import sample_bytes


class SyntheticBatches:
    def __init__(self, synthetic: SyntheticSet, batch_size: int, device: torch.device | str, *, crop_padding: int,
                 seed: int = 0, device_budget_mb: int = 2048, channels_last: bool = False, crop: str = "shift"):
        self.synthetic, self.batch_size, self.device, self.crop = synthetic, int(batch_size), torch.device(device), crop
        self.crop_padding, self.seed, self.channels_last = int(crop_padding), int(seed), bool(channels_last)
        # On the device a sample is its pixels and float32 logits.
        per_sample = sample_bytes(synthetic.image_shape, synthetic.num_classes) + 2 * synthetic.num_classes
        self.capacity = max(1, (int(device_budget_mb) << 20) // per_sample)
        self.parts = synthetic.shard_parts()  # empty for an ImageFolder-only set: then it is loaded whole
        self.single = len(synthetic) <= self.capacity or not self.parts
        if not self.parts and len(synthetic) > self.capacity:
            raise DatafreeError(f"{synthetic.folder} holds only PNGs ({len(synthetic)} samples), which do not fit "
                                f"data.device_budget_mb={device_budget_mb}: raise it, or write the set with format=both.")
        self.epoch, self.window = 0, 0
        self._resume: dict | None = None
        self._current: DeviceBatches | None = None
        self._whole: DeviceBatches | None = None

    def _batches(self, samples: Samples, seed: int) -> DeviceBatches:
        dataset = ImageDataset(images=samples.images, labels=samples.labels, classes=self.synthetic.classes)
        return DeviceBatches(dataset, self.batch_size, self.device, shuffle=True, augment=True,
                             drop_last=len(samples) >= self.batch_size, crop_padding=self.crop_padding, crop=self.crop, seed=seed,
                             channels_last=self.channels_last, targets=samples.logits.float())

    def _windows(self, epoch: int) -> list[list[int]]:
        """This epoch's shards in a random order, grouped greedily into windows that fit the budget."""
        order = torch.randperm(len(self.parts), generator=torch.Generator().manual_seed(self.seed * 100_003 + epoch))
        windows, current, size = [], [], 0
        for i in order.tolist():
            count = self.parts[i][1]
            if current and size + count > self.capacity:
                windows.append(current)
                current, size = [], 0
            current.append(i)
            size += count
        return windows + [current]

    def _load_whole(self) -> DeviceBatches:
        """The whole set's batches, loaded once."""
        if self._whole is None:
            self._whole = self._batches(self.synthetic.load(), self.seed)
        return self._whole

    def _read(self, window: list[int]) -> Samples:
        """A window's samples: its shards' in the window's order."""
        return Samples.cat([self.synthetic.read(self.parts[i][0]) for i in window])

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:
            windows = [None] if self.single else self._windows(self.epoch)
            while self.window < len(windows):
                if self.single:
                    batches = self._load_whole()
                else:
                    batches = self._batches(self._read(windows[self.window]),
                                            self.seed * 100_003 + self.epoch * 1_000 + self.window)
                if self._resume is not None:
                    batches.load_state_dict(self._resume)
                    self._resume = None
                self._current = batches
                yield from batches
                self.window += 1
            self.epoch, self.window = self.epoch + 1, 0

    def draw(self, count: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
        """``count`` batches drawn with ``generator`` from the samples the stream holds now (the whole set, or its
        window of shards), augmented as its batches are (:meth:`DeviceBatches.draw`). The stream goes on as if
        nothing was drawn."""
        return self._holding().draw(count, generator)

    def _holding(self) -> DeviceBatches:
        """The batches of the samples the stream holds now; before its first batch (a new run, or a resumed one, such
        as a run stopped after its last step) those it starts from, so that a resumed run re-estimates on what the
        run it continues held."""
        if self._current is not None:
            return self._current
        if self.single:
            return self._load_whole()
        # The window its position names (each window's samples are its shards in their order; the stream's order
        # and position, which draws do not use, stay in self._resume for the stream).
        return self._batches(self._read(self._windows(self.epoch)[self.window]), 0)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "window": self.window,
                "batches": None if self._current is None else self._current.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.window, self._resume = int(state["epoch"]), int(state["window"]), state.get("batches")
