"""Image priors shared by pixel- and generator-based synthesizers."""
from __future__ import annotations

import torch


def total_variation(images: torch.Tensor, p: int = 2) -> torch.Tensor:
    """Mean |difference|^p between neighbouring pixels (horizontal, vertical and both diagonals).

    A per-pixel mean, so its weight does not depend on the image size or batch.
    """
    x = images.float()
    diffs = (
        x[..., :, 1:] - x[..., :, :-1],
        x[..., 1:, :] - x[..., :-1, :],
        x[..., 1:, 1:] - x[..., :-1, :-1],
        x[..., 1:, :-1] - x[..., :-1, 1:],
    )
    if p == 1:
        return sum(d.abs().mean() for d in diffs)
    return sum(d.pow(2).mean() for d in diffs)
