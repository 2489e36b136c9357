"""Common corruptions at three severities, on the device with kornia: how a student holds up off the clean test set.

The levels are CIFAR-10-C's severities 1, 3 and 5 (Hendrycks & Dietterich, 2019) for Gaussian noise (sigma),
Gaussian blur (sigma), brightness (shift), contrast (factor) and JPEG (quality), applied with kornia's operators:
brightness is added to every channel (CIFAR-10-C adds it to the HSV value) and contrast scales around each image's
grey mean (CIFAR-10-C: around each channel's mean), so the images are close to, not equal to, CIFAR-10-C's.
Every corruption takes and returns images in [0, 1]; noise is drawn from a seeded generator, so a report repeats.
"""
from __future__ import annotations

import math
from typing import Callable

import kornia
import torch

SEVERITIES = (1, 3, 5)
# name: (the parameter at severities 1, 3, 5, what it is)
LEVELS: dict[str, tuple[tuple[float, float, float], str]] = {
    "gaussian_noise": ((0.04, 0.08, 0.10), "sigma of the added noise"),
    "gaussian_blur": ((0.4, 0.7, 1.0), "sigma of the blur kernel, in pixels"),
    "brightness": ((0.05, 0.15, 0.30), "added to every pixel"),
    "contrast": ((0.75, 0.40, 0.15), "contrast factor around the grey mean"),
    "jpeg": ((80, 58, 40), "JPEG quality"),
}


def _noise(images: torch.Tensor, sigma: float, generator: torch.Generator) -> torch.Tensor:
    noise = torch.randn(images.shape, generator=generator, device=images.device, dtype=images.dtype)
    return (images + sigma * noise).clamp_(0, 1)


def _blur(images: torch.Tensor, sigma: float, generator: torch.Generator) -> torch.Tensor:
    size = 2 * math.ceil(3 * sigma) + 1
    return kornia.filters.gaussian_blur2d(images, (size, size), (sigma, sigma), border_type="reflect").clamp_(0, 1)


def _brightness(images: torch.Tensor, shift: float, generator: torch.Generator) -> torch.Tensor:
    return kornia.enhance.adjust_brightness(images, shift)


def _contrast(images: torch.Tensor, factor: float, generator: torch.Generator) -> torch.Tensor:
    if images.shape[1] == 3:
        return kornia.enhance.adjust_contrast_with_mean_subtraction(images, factor).clamp_(0, 1)
    mean = images.mean(dim=(1, 2, 3), keepdim=True)  # grey (or RGBA) images: the same rule on all channels
    return ((images - mean) * factor + mean).clamp_(0, 1)


def _jpeg(images: torch.Tensor, quality: float, generator: torch.Generator) -> torch.Tensor:
    """kornia's codec takes RGB: grey images are coded as RGB and read back as one channel, alpha is kept."""
    channels = images.shape[1]
    rgb = images.expand(-1, 3, -1, -1) if channels == 1 else images[:, :3]
    coded = kornia.enhance.jpeg_codec_differentiable(rgb.contiguous(),
                                                     torch.tensor([float(quality)], device=images.device))
    coded = coded.clamp_(0, 1)
    if channels == 1:
        return coded.mean(1, keepdim=True)
    if channels == 4:
        return torch.cat([coded, images[:, 3:]], 1)
    return coded


_APPLY: dict[str, Callable[[torch.Tensor, float, torch.Generator], torch.Tensor]] = {
    "gaussian_noise": _noise, "gaussian_blur": _blur, "brightness": _brightness, "contrast": _contrast, "jpeg": _jpeg,
}


@torch.no_grad()
def corrupt(images: torch.Tensor, name: str, severity: int, generator: torch.Generator) -> torch.Tensor:
    """``images`` (N x C x H x W in [0, 1], float) with corruption ``name`` at ``severity`` (1, 3 or 5)."""
    levels, _ = LEVELS[name]
    value = levels[SEVERITIES.index(severity)]
    return _APPLY[name](images.float(), value, generator)
