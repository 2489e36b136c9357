"""Batched, differentiable augmentation in pixel space ([0, 1] in, [0, 1] out).

Gradients flow through every op to the pixels (DeepInversion optimises them);
random draws are made on the tensor's device, so no host sync is needed and, without
``extra`` modules, the whole augmentation can be captured in a CUDA graph.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from datafree.data.augment import shift_flip
from datafree.errors import DatafreeError


class Augment(nn.Module):
    """Per-image random jitter (a roll) or padded random crop, horizontal flip, then optional extra modules.

    ``jitter`` rolls each image by its own offset of up to that many pixels (DeepInversion's
    jitter; nothing is cut off); ``crop_padding`` instead crops each image from a copy padded
    with that many zero pixels (the CIFAR training augmentation; ``"auto"``: an eighth of the side, see
    :meth:`fit`); ``flip`` flips each image
    with probability 1/2; ``extra`` modules (kornia augmentations from a recipe) run last and
    the result is clamped to [0, 1] so that colour augmentations cannot leave pixel space.
    """

    def __init__(self, jitter: int = 0, flip: bool = True, extra: Sequence[nn.Module] | None = None,
                 crop_padding: int | str = 0):
        super().__init__()
        auto = crop_padding == "auto"
        if jitter < 0 or (not auto and crop_padding < 0):
            raise DatafreeError(f"augmentation jitter and crop_padding (pixels of random shift) must be >= 0, got "
                                f"jitter={jitter}, crop_padding={crop_padding}: set 0 for none.")
        if jitter and crop_padding:
            raise DatafreeError(f"choose jitter (a roll) or crop_padding (a padded crop), not both "
                                f"(got jitter={jitter}, crop_padding={crop_padding}).")
        self.jitter, self.crop_padding = int(jitter), crop_padding if auto else int(crop_padding)
        self.flip = bool(flip)
        self.extra = nn.Sequential(*(extra or []))

    def fit(self, image_size: tuple[int, int]) -> str | None:
        """Resolve ``crop_padding="auto"`` for images of ``image_size``: an eighth of the shorter side (4 at 32 px,
        CIFAR's); returns what was chosen, for the log, or None when nothing was left open."""
        if self.crop_padding != "auto":
            return None
        self.crop_padding = max(1, min(image_size) // 8)
        return f"crop_padding=auto: {self.crop_padding} pixels for {image_size[0]}x{image_size[1]} images"

    @property
    def capturable(self) -> bool:
        """True when every draw happens on the device with fixed shapes (no ``extra`` modules)."""
        return not len(self.extra)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.shift_and_flip(images)
        if len(self.extra):
            x = self.extra(x).clamp(0, 1)
        return x

    def shift_and_flip(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The shift (or padded crop) and the flip alone, drawn from ``generator`` (the default stream when None):
        draws that leave the training's random streams untouched, where ``extra`` modules draw from the default."""
        if self.crop_padding:
            return shift_flip(images, self.crop_padding, self.flip, "zeros", generator=generator)
        return shift_flip(images, self.jitter, self.flip, "wrap", generator=generator)
