"""A ring buffer of past synthetic images, kept on the training device as uint8.

uint8 is what an exported data set holds, and 4x smaller than float32, so a
GPU can replay tens of thousands of past images without a copy to the host.

The storage grows as images arrive, doubling up to the capacity, instead of taking the capacity up front: with
``trainer.pool_capacity=auto`` (a quarter of the free GPU memory) a 20-minute 128-px run on an H100 reserved
19.5 GiB for 425,089 images and filled 115,968 of them, so side-by-side runs and the run's own peak paid for room
nobody used. Until the buffer is full it never wraps, so which image sits in which slot, and therefore what a seeded
draw returns, is the same whether it grew or was allocated at once. Each growth replaces the storage tensor: a
captured step that reads it must be captured again (:attr:`SyntheticPool.allocations` counts them).
"""
from __future__ import annotations

import torch

from datafree.errors import DatafreeError
from datafree.ops.pixels import dequantise, quantise
from datafree.utils.device import memory_amount


def oldest_first(images: torch.Tensor, next_index: int) -> torch.Tensor:
    """A ring buffer's filled ``images`` (storage order) oldest first: once it wrapped, the oldest is where the next
    image would be written."""
    if next_index in (0, len(images)):
        return images
    return torch.cat([images[next_index:], images[:next_index]])


# The storage a pool starts with, in images (at most its capacity): 12 MiB at 32 px, 588 MiB at 224 px; from there
# each growth doubles it, so a pool of 425,089 images grows 7 times.
FIRST_ALLOCATION = 4096


class SyntheticPool:
    def __init__(self, capacity: int, image_shape: tuple[int, int, int], device: torch.device | str = "cpu",
                 first_allocation: int | None = None):
        if not 0 <= capacity <= 2**24:  # sampling scales a float32 uniform by the fill level: exact up to 2**24
            raise DatafreeError(f"the replay pool capacity must be between 0 and 2**24 images, got {capacity}: "
                                "set e.g. trainer.pool_capacity=50000.")
        self.capacity = int(capacity)
        self.image_shape = tuple(image_shape)
        self.device = torch.device(device)
        first = FIRST_ALLOCATION if first_allocation is None else int(first_allocation)
        self._images = self._allocate(min(self.capacity, max(1, first)))
        self.allocations = 1  # how many storage tensors the pool has had: a captured step reads the current one
        self.stopped_growing: str | None = None  # why the pool stopped below its capacity (out of device memory)
        self._size = 0  # host-side counters: adding never asks the device how full it is
        self._next = 0
        # The fill level again, on the device: sampling reads it there, so a sampling step captured in a
        # CUDA graph draws from the whole pool as it grows.
        self._fill = torch.zeros((), device=self.device)

    def _allocate(self, images: int) -> torch.Tensor:
        return torch.empty((images, *self.image_shape), dtype=torch.uint8, device=self.device)

    def nbytes(self) -> int:
        """The memory the pool's storage holds now (it grows as the pool fills, up to :meth:`capacity_bytes`)."""
        return self._images.numel() * self._images.element_size()

    def capacity_bytes(self) -> int:
        """The memory the pool holds once full."""
        return self.capacity * self.image_shape[0] * self.image_shape[1] * self.image_shape[2]

    def __len__(self) -> int:
        return self._size

    def _make_room(self, size: int) -> None:
        """Grow the storage to hold ``size`` images (at most the capacity): doubled, or to ``size`` if more.
        Out of device memory for the new storage, the pool stops growing where it is and keeps the newest images
        from then on; :attr:`stopped_growing` says so once, for the run's log."""
        held = self._images.shape[0]
        if size <= held:
            return
        grown_size = min(self.capacity, max(size, 2 * held))
        try:
            grown = self._allocate(grown_size)
        except torch.OutOfMemoryError:
            need = grown_size * self._images[:1].numel()
            self.capacity = held
            self.stopped_growing = (
                f"the replay pool stopped growing at {held:,} images: {memory_amount(need)} for {grown_size:,} did "
                f"not fit beside the run, so it keeps the newest {held:,} from now on (trainer.pool_capacity={held} "
                "sets that from the start)")
            return
        grown[:self._size] = self._images[:self._size]  # not yet wrapped: the slots keep their order
        self._images = grown
        self.allocations += 1

    def add(self, images: torch.Tensor) -> None:
        """Store images in [0, 1]; the oldest are overwritten once full."""
        if self.capacity == 0:
            return
        quantised = quantise(images)
        if self._size < self.capacity:
            self._make_room(min(self.capacity, self._size + quantised.shape[0]))
        if quantised.shape[0] > self.capacity:
            quantised = quantised[-self.capacity:]
        n = quantised.shape[0]
        end = self._next + n
        if end <= self.capacity:
            self._images[self._next:end] = quantised
        else:
            first = self.capacity - self._next
            self._images[self._next:] = quantised[:first]
            self._images[: n - first] = quantised[first:]
        self._next = end % self.capacity
        self._size = min(self.capacity, self._size + n)
        self._fill.fill_(self._size)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` stored images drawn uniformly with replacement, as float in [0, 1] (``generator``: whose draws, on
        the pool's device; the default stream when None)."""
        return dequantise(self.sample_uint8(n, generator))

    def sample_uint8(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` stored images drawn uniformly with replacement, as stored (uint8)."""
        if self._size == 0:
            raise RuntimeError("cannot sample from an empty pool")
        # floor(u * fill) with u in [0, 1): uniform over the filled slots, with the fill level read on the device.
        index = (torch.rand(n, device=self.device, generator=generator) * self._fill).long()
        return self._images[index]

    def images(self) -> torch.Tensor:
        """All stored images (uint8), oldest first once the buffer has wrapped."""
        return oldest_first(self._images[: self._size], self._next)

    def state_dict(self) -> dict:
        """The stored images (uint8, in storage order) and the write position: enough to continue exactly."""
        return {"images": self._images[: self._size], "size": self._size, "next": self._next}

    def load_state_dict(self, state: dict) -> None:
        size = int(state["size"])
        if size > self.capacity:
            raise ValueError(f"a saved pool of {size} images does not fit a pool of capacity {self.capacity}")
        self._make_room(size)
        if size > self._images.shape[0]:  # out of memory: the saved pool cannot be restored as it was
            raise DatafreeError(f"cannot resume: {self.stopped_growing}; the saved pool holds {size:,} images. Free "
                                "GPU memory (another process on it?) and resume again.")
        self._images[:size] = state["images"].to(self.device)
        self._size, self._next = size, int(state["next"])
        self._fill.fill_(size)
