"""A procedurally generated labelled image set for CPU demos and tests ("shapes").

Ten visually distinct classes drawn with batched torch ops: filled disc, ring, square,
triangle (one of four orientations), horizontal / vertical / diagonal stripes,
cross, checkerboard and a soft gradient blob. Every image gets a random position,
scale, foreground and background colour (kept apart so the shape is visible) and a
little Gaussian pixel noise: a small CNN learns it to > 90 % in about a minute of
CPU training, far above the 10 % of guessing, but it is not solved by colour or
position alone. Output is deterministic given ``seed`` (and n, image_size, num_classes).
"""
from __future__ import annotations

import math

import torch

from datafree.data.dataset import ImageDataset
from datafree.errors import DatafreeError

SHAPE_CLASSES: tuple[str, ...] = (
    "disc",
    "ring",
    "square",
    "triangle",
    "hstripes",
    "vstripes",
    "dstripes",
    "cross",
    "checker",
    "blob",
)

# Images drawn per batch of tensor ops: small temporaries stay in cache (fastest measured).
_CHUNK = 2048
_NOISE_STD = 0.05


def make_shapes(n: int, image_size: int = 16, seed: int = 0, num_classes: int = 10) -> ImageDataset:
    """``n`` RGB images of ``image_size`` x ``image_size`` with balanced labels 0..num_classes-1.

    Classes are the first ``num_classes`` of :data:`SHAPE_CLASSES`; each class gets
    ``n // num_classes`` or one more image, in a seeded random order.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise DatafreeError(f"make_shapes needs n >= 1 images, got {n!r}: set data.n to a positive int.")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8:
        raise DatafreeError(
            f"make_shapes needs image_size >= 8 pixels, got {image_size!r}: set data.image_size=16 (or 32)."
        )
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or not 1 <= num_classes <= len(SHAPE_CLASSES):
        raise DatafreeError(
            f"make_shapes draws 1..{len(SHAPE_CLASSES)} classes, got num_classes={num_classes!r}: "
            f"set data.num_classes between 1 and {len(SHAPE_CLASSES)}."
        )
    g = torch.Generator().manual_seed(int(seed))
    labels = (torch.arange(n) % num_classes)[torch.randperm(n, generator=g)]

    # Per-image parameters, all drawn up front from one generator (deterministic).
    def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=g) * (high - low) + low

    params = {
        "cx": uniform(-0.4, 0.4, n),  # centre, in [-1, 1] image coordinates
        "cy": uniform(-0.4, 0.4, n),
        "r": uniform(0.45, 0.8, n),  # half-size of the shape
        "period": uniform(0.38, 0.6, n),  # stripe period (image units; 3-5 px at 16 px)
        "phase": uniform(0.0, 2 * math.pi, n),
        "cell": uniform(0.24, 0.38, n),  # checkerboard cell (2-3 px at 16 px)
        "turn": torch.randint(0, 4, (n,), generator=g),  # triangle orientation, diagonal direction
    }
    bg = torch.rand(n, 3, generator=g)
    fg = torch.rand(n, 3, generator=g)
    # Keep foreground and background apart: too-similar pairs get fg moved by half the colour cube.
    close = (fg - bg).abs().mean(dim=1) < 0.3
    fg = torch.where(close[:, None], (bg + 0.5 + 0.2 * torch.rand(n, 3, generator=g)) % 1.0, fg)

    images = torch.empty(n, 3, image_size, image_size, dtype=torch.uint8)
    coords = (torch.arange(image_size, dtype=torch.float32) + 0.5) * (2.0 / image_size) - 1.0  # pixel centres
    # The ops are small: one thread is fastest and, on a busy machine, far more predictable
    # (intra-op threads that wait for a core burn time in spin loops; measured 10x slowdowns).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for start in range(0, n, _CHUNK):
            stop = min(start + _CHUNK, n)
            alpha = _alpha(labels[start:stop], {k: v[start:stop] for k, v in params.items()}, coords)
            a = alpha[:, None]  # B x 1 x H x W
            img = bg[start:stop, :, None, None] * (1 - a) + fg[start:stop, :, None, None] * a
            img = img + _NOISE_STD * torch.randn(img.shape, generator=g)
            images[start:stop] = img.clamp_(0, 1).mul_(255).round_().to(torch.uint8)
    finally:
        torch.set_num_threads(threads)
    return ImageDataset(images=images, labels=labels.to(torch.int64), classes=list(SHAPE_CLASSES[:num_classes]))


def _alpha(labels: torch.Tensor, p: dict[str, torch.Tensor], coords: torch.Tensor) -> torch.Tensor:
    """Foreground coverage in [0, 1], B x H x W, for each image's class."""
    b, s = labels.numel(), coords.numel()
    alpha = torch.zeros(b, s, s)
    y = coords.view(1, s, 1)
    x = coords.view(1, 1, s)
    for cls in range(len(SHAPE_CLASSES)):
        idx = (labels == cls).nonzero().reshape(-1)
        if idx.numel() == 0:
            continue

        def q(name: str) -> torch.Tensor:
            return p[name].index_select(0, idx).view(-1, 1, 1)

        cx, cy, r = q("cx"), q("cy"), q("r")
        dx, dy = x - cx, y - cy  # image units
        u, v = dx / r, dy / r  # shape units: the shape spans [-1, 1]
        box = (u.abs() <= 1) & (v.abs() <= 1)
        name = SHAPE_CLASSES[cls]
        if name == "disc":
            a = (u * u + v * v) <= 1
        elif name == "ring":
            d = (u * u + v * v).sqrt()
            a = (d <= 1) & (d >= 0.55)
        elif name == "square":
            a = (u.abs() <= 0.8) & (v.abs() <= 0.8)
        elif name == "triangle":
            turn = q("turn")
            # Rotate by multiples of 90 degrees, then an apex-up triangle: apex at v=-0.9, base at v=0.8.
            uu = torch.where(turn % 2 == 0, u, v) * torch.where(turn >= 2, -1.0, 1.0)
            vv = torch.where(turn % 2 == 0, v, u) * torch.where(turn >= 2, -1.0, 1.0)
            a = (vv <= 0.8) & (uu.abs() <= (vv + 0.9) * (0.95 / 1.7))
        elif name in ("hstripes", "vstripes", "dstripes"):
            if name == "hstripes":
                t = dy
            elif name == "vstripes":
                t = dx
            else:
                sign = torch.where(q("turn") % 2 == 0, 1.0, -1.0)
                t = (dx + sign * dy) * (1 / math.sqrt(2))
            a = box & (torch.sin(t * (2 * math.pi) / q("period") + q("phase")) > 0)
        elif name == "cross":
            a = ((u.abs() <= 0.3) & (v.abs() <= 1)) | ((v.abs() <= 0.3) & (u.abs() <= 1))
        elif name == "checker":
            cell = q("cell")
            a = box & ((torch.floor(dx / cell) + torch.floor(dy / cell)) % 2 == 0)
        else:  # blob: soft Gaussian, no hard edge
            a = torch.exp(-(u * u + v * v) * 1.5)
        alpha[idx] = a.to(alpha.dtype)
    return alpha
