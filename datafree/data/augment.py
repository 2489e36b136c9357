"""Per-image random translation and horizontal flip of a whole batch in one gather, and the random-resized
crop that larger images train with.

Used for real batches (:class:`~datafree.data.DeviceBatches`, on uint8) and for the
student's synthetic batches (:class:`~datafree.synthesizers.Augment`, on float pixels).
Every random draw is made on the tensor's device, and the shapes never change, so the
op needs no host sync and can be captured in a CUDA graph.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

BORDERS = ("zeros", "wrap")


def shift_flip(x: torch.Tensor, shift: int, flip: bool, border: str = "zeros",
               generator: torch.Generator | None = None, part: tuple[int, int] | None = None) -> torch.Tensor:
    """Each image moved by its own random offset in [-shift, shift] on both axes, then flipped left-right
    with probability 1/2 (when ``flip``).

    ``border="zeros"`` is the padded random crop of CIFAR training (padding ``shift``, zero fill);
    ``border="wrap"`` rolls the image around (DeepInversion's jitter), so no pixel is lost and gradients
    reach every pixel. Works on any dtype (uint8 is a quarter of float's memory traffic).

    ``part=(start, total)``: ``x`` is rows ``start:start + len(x)`` of a batch of ``total`` images, and
    gets those rows' draws of the whole batch's (one rank's share of a global batch: every rank draws
    alike, so their generators stay in step, and the shares together are the one-process batch).
    """
    if border not in BORDERS:
        raise ValueError(f"border must be one of {BORDERS}, got {border!r}")
    b, c, h, w = x.shape
    if shift == 0 and not flip:
        return x
    start, total = (0, b) if part is None else part
    rows_of_x = slice(start, start + b)
    device = x.device
    rows, cols = torch.arange(h, device=device), torch.arange(w, device=device)
    if flip:
        flipped = torch.rand(total, 1, device=device, generator=generator)[rows_of_x] < 0.5
        # Flipping the crop == reading its columns right to left.
        cols = torch.where(flipped, cols.flip(0), cols)  # b x w
    else:
        cols = cols.expand(b, w)
    if shift:
        offsets = torch.randint(0, 2 * shift + 1, (2, total, 1), device=device, generator=generator)[:, rows_of_x]
        rows, cols = offsets[0] + rows, cols + offsets[1]  # b x h, b x w: positions in the padded image
        if border == "zeros":
            x = F.pad(x, (shift, shift, shift, shift))
            h_in, w_in = h + 2 * shift, w + 2 * shift
        else:
            rows, cols = (rows - shift) % h, (cols - shift) % w
            h_in, w_in = h, w
    else:
        rows, h_in, w_in = rows.expand(b, h), h, w
    # Flat (row * width + col) index into each source image, shared by its channels.
    index = (rows * w_in).unsqueeze(2) + cols.unsqueeze(1)  # b x h x w
    index = index.view(b, 1, h * w).expand(b, c, h * w)
    out = x.reshape(b, c, h_in * w_in).gather(2, index).view(b, c, h, w)
    return out


def resized_crop_flip(x: torch.Tensor, scale: tuple[float, float] = (0.25, 1.0), flip: bool = True,
                      generator: torch.Generator | None = None, part: tuple[int, int] | None = None,
                      ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> torch.Tensor:
    """Each image (float) cropped to a random box of ``scale`` of its area with an aspect ratio in ``ratio``
    (log-uniform), resized back to its size (bilinear) and flipped left-right with probability 1/2: the
    random-resized crop of ImageNet training, for a whole batch in one ``grid_sample``, with the draws on the
    device (no host sync). ``part`` is :func:`shift_flip`'s."""
    b, _, h, w = x.shape
    start, total = (0, b) if part is None else part
    rows = slice(start, start + b)
    area = torch.empty(total, device=x.device).uniform_(*scale, generator=generator)[rows]
    log_ratio = torch.empty(total, device=x.device).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=generator)[rows]
    centre = torch.rand(total, 2, device=x.device, generator=generator)[rows]
    ratio = log_ratio.exp()
    # The box as fractions of the image's width and height (clamped to fit), its centre anywhere it fits.
    bw, bh = (area * ratio).sqrt().clamp(max=1.0), (area / ratio).sqrt().clamp(max=1.0)
    cx, cy = (centre[:, 0] * 2 - 1) * (1 - bw), (centre[:, 1] * 2 - 1) * (1 - bh)
    sign = torch.ones(b, device=x.device)
    if flip:
        sign = torch.where(torch.rand(total, device=x.device, generator=generator)[rows] < 0.5, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3, device=x.device)
    theta[:, 0, 0], theta[:, 0, 2] = bw * sign, cx
    theta[:, 1, 1], theta[:, 1, 2] = bh, cy
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode="border", align_corners=False)
