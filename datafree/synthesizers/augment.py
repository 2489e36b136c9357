"""Batched, differentiable augmentation in pixel space ([0, 1] in, [0, 1] out).

Gradients flow through every op to the pixels (DeepInversion optimises them);
random draws are made on the tensor's device so no host sync is needed.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from datafree.errors import DatafreeError


class Augment(nn.Module):
    """Random jitter (roll), horizontal flip, then optional extra modules (e.g. kornia).

    ``jitter`` rolls the whole batch by up to that many pixels (DeepInversion's
    jitter); ``flip`` flips each sample with probability 1/2; ``extra`` modules
    (kornia augmentations from a recipe) run last and the result is clamped to
    [0, 1] so that colour augmentations cannot leave pixel space.
    """

    def __init__(self, jitter: int = 0, flip: bool = True, extra: Sequence[nn.Module] | None = None):
        super().__init__()
        if jitter < 0:
            raise DatafreeError(f"augmentation jitter (pixels of random shift) must be >= 0, got {jitter}: set it to 0 for none.")
        self.jitter = int(jitter)
        self.flip = bool(flip)
        self.extra = nn.Sequential(*(extra or []))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images
        if self.jitter > 0:
            # One offset pair for the batch, drawn on the host from torch's CPU generator: no device sync.
            dx, dy = torch.randint(-self.jitter, self.jitter + 1, (2,)).tolist()
            x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
        if self.flip:
            mask = torch.rand(x.shape[0], 1, 1, 1, device=x.device) < 0.5
            x = torch.where(mask, x.flip(3), x)
        if len(self.extra):
            x = self.extra(x).clamp(0, 1)
        return x
