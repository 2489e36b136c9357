"""Images as stored (uint8 pixels) and as computed on (float in [0, 1]): one rounding for pools, data sets and batches."""
from __future__ import annotations

import torch


def quantise(images: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] as the uint8 pixels a data set stores (the same rounding as ``Batch.to_uint8``)."""
    return (images.detach().clamp(0, 1) * 255).round().to(torch.uint8)


def dequantise(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels as float images in [0, 1]."""
    return images.float().div_(255.0)
