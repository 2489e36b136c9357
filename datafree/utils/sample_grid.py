"""A picture of synthetic samples a person can read: one row per class, labelled, small images enlarged."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

PER_ROW = 8        # images shown per class
MAX_ROWS = 20      # more classes than this: the rows of the classes with the most images
CELL = 64          # small images are enlarged (nearest neighbour, whole factors) to at least this many pixels
PAD = 2
LABEL_WIDTH = 110
BACKGROUND = 255


def save_sample_grid(images: torch.Tensor, labels: torch.Tensor, path: str | Path, classes: Sequence[str] = (),
                     num_classes: int | None = None) -> Path:
    """Write ``images`` (N x C x H x W in [0, 1]) as rows by ``labels`` (the class the teacher gives each one).

    Grey images stay grey and RGB stays RGB; of four channels (RGBA) the colour is shown, since an alpha
    channel would hide the pixels; other channel counts show their first channel in grey.
    """
    from PIL import Image, ImageDraw

    images = images.detach().float().cpu().clamp(0, 1)
    labels = labels.detach().cpu().long()
    num_classes = int(num_classes or (int(labels.max()) + 1 if labels.numel() else 1))
    names = [f"{k} {classes[k]}" if k < len(classes) else f"class {k}" for k in range(num_classes)]
    counts = torch.bincount(labels, minlength=num_classes)
    rows = list(range(num_classes))
    if num_classes > MAX_ROWS:
        rows = sorted(torch.argsort(counts, descending=True, stable=True)[:MAX_ROWS].tolist())

    pixels = _displayable(images)
    height, width = pixels.shape[1:3]
    scale = max(1, math.ceil(CELL / max(height, width)))
    cell_h, cell_w = height * scale, width * scale
    canvas = Image.new("RGB", (LABEL_WIDTH + PER_ROW * (cell_w + PAD) + PAD, len(rows) * (cell_h + PAD) + PAD),
                       (BACKGROUND,) * 3)
    draw = ImageDraw.Draw(canvas)
    font = _font()
    for r, k in enumerate(rows):
        top = PAD + r * (cell_h + PAD)
        chosen = (labels == k).nonzero().flatten()[:PER_ROW].tolist()
        text = f"{names[k]}\n({int(counts[k])} of {len(labels)})"
        draw.multiline_text((4, top + max(0, cell_h // 2 - 12)), text, fill=(0, 0, 0), font=font)
        for c, index in enumerate(chosen):
            tile = np.repeat(np.repeat(pixels[index], scale, axis=0), scale, axis=1)
            canvas.paste(Image.fromarray(tile), (LABEL_WIDTH + PAD + c * (cell_w + PAD), top))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path


def _displayable(images: torch.Tensor) -> np.ndarray:
    """N x H x W x 3 uint8: grey repeated, RGB kept, RGBA's colour, anything else its first channel."""
    channels = images.shape[1]
    shown = images[:, :3] if channels in (3, 4) else images[:, :1].expand(-1, 3, -1, -1)
    return (shown * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def _font():
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=12)
    except TypeError:  # Pillow < 10.1: one bitmap size
        return ImageFont.load_default()
