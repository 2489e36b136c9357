"""Small PNG charts drawn with PIL (no plotting library): sample grids, bar charts, histograms, image pairs."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]
_GAP = 2
_MARKER = (90, 90, 90)


def _font(size: int = 12):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one bitmap size
        return ImageFont.load_default()


def _text_width(draw: ImageDraw.ImageDraw, text: str, font) -> int:
    left, _, right, _ = draw.textbbox((0, 0), text, font=font)
    return right - left


def tile_scale(size: int, at_least: int = 48) -> int:
    """Integer upscaling that makes a tile of ``size`` pixels at least ``at_least`` wide (tiny images stay visible)."""
    return max(1, math.ceil(at_least / max(1, size)))


def _to_pil(image: torch.Tensor, scale: int) -> Image.Image:
    """A uint8 C x H x W tensor (1 to 4 channels; more are cut to 3) as an RGB PIL image, upscaled (nearest)."""
    x = image[:3] if image.shape[0] >= 3 else image[:1].expand(3, -1, -1)
    if scale > 1:
        x = F.interpolate(x[None].float(), scale_factor=scale, mode="nearest")[0].to(torch.uint8)
    return Image.fromarray(x.permute(1, 2, 0).contiguous().numpy())


def class_grid(images_per_class: Sequence[torch.Tensor], names: Sequence[str], path: str | Path, title: str = "") -> Path:
    """One row per class: its name, then its images (uint8 k x C x H x W, possibly none)."""
    font = _font()
    shape = next((imgs.shape[1:] for imgs in images_per_class if len(imgs)), (3, 8, 8))
    scale = tile_scale(int(shape[2]))
    tile_h, tile_w = int(shape[1]) * scale, int(shape[2]) * scale
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_w = max([_text_width(probe, str(n), font) for n in names] + [20]) + 8
    columns = max([len(imgs) for imgs in images_per_class] + [1])
    top = 20 if title else 0
    width = label_w + columns * (tile_w + _GAP) + _GAP
    height = top + len(names) * (tile_h + _GAP) + _GAP
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((4, 3), title, fill="black", font=font)
    for row, (imgs, name) in enumerate(zip(images_per_class, names)):
        y = top + _GAP + row * (tile_h + _GAP)
        draw.text((4, y + tile_h // 2 - 6), str(name), fill="black", font=font)
        for col, image in enumerate(imgs):
            canvas.paste(_to_pil(image, scale), (label_w + col * (tile_w + _GAP), y))
    return _save(canvas, path)


def bar_chart(values: Sequence[float], names: Sequence[str], path: str | Path, title: str = "") -> Path:
    """Horizontal bars, one per name, with the value written at the end of each bar."""
    font = _font()
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_w = max([_text_width(probe, str(n), font) for n in names] + [20]) + 8
    bar_h, plot_w, top = 14, 360, 24 if title else 6
    peak = max([float(v) for v in values] + [1e-12])
    canvas = Image.new("RGB", (label_w + plot_w + 70, top + len(values) * (bar_h + 4) + 6), "white")
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((4, 4), title, fill="black", font=font)
    for row, (value, name) in enumerate(zip(values, names)):
        y = top + row * (bar_h + 4)
        draw.text((4, y), str(name), fill="black", font=font)
        length = int(round(plot_w * float(value) / peak))
        draw.rectangle([label_w, y, label_w + max(1, length), y + bar_h], fill=_COLOURS[0])
        draw.text((label_w + length + 4, y), f"{value:g}", fill="black", font=font)
    return _save(canvas, path)


def histogram_panel(series: dict[str, torch.Tensor], title: str = "", xlabel: str = "", bins: int = 60,
                    markers: dict[str, float] | None = None) -> Image.Image:
    """Overlaid density histograms (step lines) of 1-D value sets on one axis, with dashed vertical marker lines.

    The legend (series and markers) sits in rows between the title and the plot, never over the bars.
    """
    font = _font()
    values = {k: v.detach().float().reshape(-1).cpu() for k, v in series.items() if v.numel()}
    every = torch.cat(list(values.values())) if values else torch.zeros(1)
    low, high = float(every.min()), float(every.max())
    if high <= low:
        high = low + 1e-6
    markers = {name: value for name, value in (markers or {}).items() if low <= value <= high}
    entries = [(f"{name} ({v.numel()})", _COLOURS[i % len(_COLOURS)], False) for i, (name, v) in enumerate(values.items())]
    entries += [(name, _MARKER, True) for name in markers]
    width, left, right, bottom, plot_h = 640, 50, 16, 46, 290
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    places, x, row = [], left, 0
    for text, _, _ in entries:
        span = 24 + _text_width(probe, text, font) + 16
        if x + span > width - right and x > left:
            x, row = left, row + 1
        places.append((x, 26 + 16 * row))
        x += span
    top = 26 + 16 * (row + 1) + 6
    plot_w = width - left - right
    height = top + plot_h + bottom
    densities = {k: torch.histc(v, bins=bins, min=low, max=high) / max(1, v.numel()) for k, v in values.items()}
    peak = max([float(d.max()) for d in densities.values()] + [1e-12])
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((left, 6), title, fill="black", font=font)
    for (text, colour, dashed), (x, y) in zip(entries, places):
        for start in range(x, x + 18, 6 if dashed else 18):
            draw.line([start, y + 7, start + (3 if dashed else 18), y + 7], fill=colour, width=1 if dashed else 2)
        draw.text((x + 24, y), text, fill=colour, font=font)
    draw.line([left, top + plot_h, left + plot_w, top + plot_h], fill="black")
    draw.line([left, top, left, top + plot_h], fill="black")
    x_of = lambda v: left + (v - low) / (high - low) * plot_w  # noqa: E731
    for tick in range(5):
        v = low + (high - low) * tick / 4
        draw.line([x_of(v), top + plot_h, x_of(v), top + plot_h + 4], fill="black")
        label = f"{v:.3g}"
        shift = _text_width(draw, label, font) * tick // 4  # the last label ends at its tick, inside the picture
        draw.text((x_of(v) - shift, top + plot_h + 6), label, fill="black", font=font)
    draw.text((left + plot_w // 2 - _text_width(draw, xlabel, font) // 2, height - 18), xlabel, fill="black", font=font)
    for index, (name, density) in enumerate(densities.items()):
        points = []
        for b, d in enumerate(density.tolist()):
            y = top + plot_h - d / peak * plot_h
            points += [(left + b * plot_w / bins, y), (left + (b + 1) * plot_w / bins, y)]
        draw.line(points, fill=_COLOURS[index % len(_COLOURS)], width=2)
    for value in markers.values():
        for y in range(top, top + plot_h, 8):
            draw.line([x_of(value), y, x_of(value), y + 4], fill=_MARKER)
    return canvas


def pair_panel(pairs: Sequence[tuple[torch.Tensor, torch.Tensor, str]], title: str = "",
               rows: tuple[str, str] = ("synthetic", "nearest real")) -> Image.Image:
    """Columns of image pairs (uint8 C x H x W each): the first image above, the second below, a caption under both."""
    font = _font(11)
    shape = pairs[0][0].shape if pairs else (3, 8, 8)
    scale = tile_scale(int(shape[2]), 64)
    tile_h, tile_w = int(shape[1]) * scale, int(shape[2]) * scale
    col_w = max(tile_w, 64) + 6
    label_w, top = 90, 22 if title else 4
    canvas = Image.new("RGB", (label_w + len(pairs) * col_w + 4, top + 2 * (tile_h + 4) + 30), "white")
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((4, 4), title, fill="black", font=font)
    for r, name in enumerate(rows):
        draw.text((4, top + r * (tile_h + 4) + tile_h // 2 - 6), name, fill="black", font=font)
    for col, (first, second, caption) in enumerate(pairs):
        x = label_w + col * col_w
        canvas.paste(_to_pil(first, scale), (x, top))
        canvas.paste(_to_pil(second, scale), (x, top + tile_h + 4))
        for line, text in enumerate(caption.split("\n")[:2]):
            draw.text((x, top + 2 * (tile_h + 4) + 12 * line), text, fill="black", font=font)
    return canvas


def save_stacked(panels: Sequence[Image.Image], path: str | Path) -> Path:
    """Panels one below the other in one PNG."""
    width = max(p.width for p in panels)
    canvas = Image.new("RGB", (width, sum(p.height for p in panels)), "white")
    y = 0
    for panel in panels:
        canvas.paste(panel, (0, y))
        y += panel.height
    return _save(canvas, path)


def _save(canvas: Image.Image, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path
