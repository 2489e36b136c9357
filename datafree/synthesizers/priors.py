"""Image priors shared by pixel- and generator-based synthesizers."""
from __future__ import annotations

import torch


def total_variation(images: torch.Tensor, p: int = 2) -> torch.Tensor:
    """DeepInversion's smoothness prior on the differences between neighbouring pixels.

    The differences are taken in four directions (horizontal, vertical and both diagonals)
    of ``images`` as given (DeepInversion passes the network's normalised input), and

    * ``p=1``: the mean absolute difference of each direction, summed (the paper's TV-L1);
    * ``p=2``: the L2 norm of each direction's differences over the whole batch, summed (the
      paper's TV-L2). A norm, not a mean: it grows as the square root of batch x pixels, so
      its weight belongs to a batch and image size (the DeepInversion repository's CIFAR-10
      setting for smoother images: 1e-3 at batch 256, 32x32; its "paper parameters" command: 2.5e-5).
      A per-pixel mean of squares at the same weight is ~1e-3 as strong and changes nothing.
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
    return sum(torch.linalg.vector_norm(d) for d in diffs)
