"""A ring buffer of past synthetic images, kept on the training device as uint8.

uint8 is what an exported data set holds, and 4x smaller than float32, so a
GPU can replay tens of thousands of past images without a copy to the host.
"""
from __future__ import annotations

import torch

from datafree.errors import DatafreeError
from datafree.ops.pixels import dequantise, quantise


def oldest_first(images: torch.Tensor, next_index: int) -> torch.Tensor:
    """A ring buffer's filled ``images`` (storage order) oldest first: once it wrapped, the oldest is where the next
    image would be written."""
    if next_index in (0, len(images)):
        return images
    return torch.cat([images[next_index:], images[:next_index]])


class SyntheticPool:
    def __init__(self, capacity: int, image_shape: tuple[int, int, int], device: torch.device | str = "cpu"):
        if not 0 <= capacity <= 2**24:  # sampling scales a float32 uniform by the fill level: exact up to 2**24
            raise DatafreeError(f"the replay pool capacity must be between 0 and 2**24 images, got {capacity}: "
                                "set e.g. trainer.pool_capacity=50000.")
        self.capacity = int(capacity)
        self.device = torch.device(device)
        self._images = torch.empty((self.capacity, *image_shape), dtype=torch.uint8, device=self.device)
        self._size = 0  # host-side counters: adding never asks the device how full it is
        self._next = 0
        # The fill level again, on the device: sampling reads it there, so a sampling step captured in a
        # CUDA graph draws from the whole pool as it grows.
        self._fill = torch.zeros((), device=self.device)

    def nbytes(self) -> int:
        """The device memory the pool holds: its whole capacity, allocated up front."""
        return self._images.numel() * self._images.element_size()

    def __len__(self) -> int:
        return self._size

    def add(self, images: torch.Tensor) -> None:
        """Store images in [0, 1]; the oldest are overwritten once full."""
        if self.capacity == 0:
            return
        quantised = quantise(images)
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

    def sample(self, n: int) -> torch.Tensor:
        """``n`` stored images drawn uniformly with replacement, as float in [0, 1]."""
        return dequantise(self.sample_uint8(n))

    def sample_uint8(self, n: int) -> torch.Tensor:
        """``n`` stored images drawn uniformly with replacement, as stored (uint8)."""
        if self._size == 0:
            raise RuntimeError("cannot sample from an empty pool")
        # floor(u * fill) with u in [0, 1): uniform over the filled slots, with the fill level read on the device.
        index = (torch.rand(n, device=self.device) * self._fill).long()
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
        self._images[:size] = state["images"].to(self.device)
        self._size, self._next = size, int(state["next"])
        self._fill.fill_(size)
