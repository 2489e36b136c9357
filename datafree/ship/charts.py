"""The report's pictures, drawn with PIL like datafree's other charts: accuracy against latency, reliability
diagrams and corruption curves. Each function returns a panel; :func:`side_by_side` and
:func:`datafree.export.pictures.save_stacked` lay panels out."""
from __future__ import annotations

import math
from typing import Sequence

from PIL import Image, ImageDraw

from datafree.export.pictures import _COLOURS, _font, _text_width

_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 16, 44, 44


def _axes(draw: ImageDraw.ImageDraw, width: int, height: int, title: str, xlabel: str, ylabel: str,
          x_ticks: Sequence[tuple[float, str]], y_ticks: Sequence[tuple[float, str]], x_of, y_of) -> None:
    font = _font()
    draw.text((_LEFT, 6), title, fill="black", font=font)
    bottom, right = height - _BOTTOM, width - _RIGHT
    draw.line([_LEFT, bottom, right, bottom], fill="black")
    draw.line([_LEFT, _TOP, _LEFT, bottom], fill="black")
    for value, label in x_ticks:
        x = x_of(value)
        draw.line([x, bottom, x, bottom + 4], fill="black")
        draw.text((x - _text_width(draw, label, font) // 2, bottom + 6), label, fill="black", font=font)
    for value, label in y_ticks:
        y = y_of(value)
        draw.line([_LEFT - 4, y, _LEFT, y], fill="black")
        draw.line([_LEFT + 1, y, right, y], fill=(232, 232, 232))
        draw.text((_LEFT - 8 - _text_width(draw, label, font), y - 7), label, fill="black", font=font)
    draw.text(((_LEFT + right) // 2 - _text_width(draw, xlabel, font) // 2, height - 18), xlabel, fill="black", font=font)
    draw.text((4, 24), ylabel, fill="black", font=font)  # above the axis, clear of the tick labels


def _round_ticks(low: float, high: float, most: int = 6) -> list[float]:
    """Round values in [low, high]: the multiples of the smallest step of 1, 2 or 5 x 10^k giving at most ``most``."""
    if high <= low:
        return [low]
    exponent = math.floor(math.log10((high - low) / most))
    for factor in (1, 2, 5, 10):
        step = factor * 10.0 ** exponent
        ticks = [i * step for i in range(math.ceil(low / step - 1e-9), math.floor(high / step + 1e-9) + 1)]
        if len(ticks) <= most:
            return ticks
    return [low, high]


def _log_ticks(low: float, high: float, most: int = 6) -> list[float]:
    """Round values on a log10 axis from ``low`` to ``high`` (exponents): 1, 2 and 5 x 10^k, or the powers of ten
    alone when those are too many."""
    decades = range(math.floor(low), math.ceil(high) + 1)
    for factors in ((1, 2, 5), (1,)):
        ticks = [math.log10(f) + k for k in decades for f in factors if low <= math.log10(f) + k <= high]
        if len(ticks) <= most:
            return ticks or [low, high]
    return ticks


def scatter_panel(points: Sequence[tuple[str, float, float]], title: str, xlabel: str, ylabel: str,
                  log_x: bool = True, width: int = 560, height: int = 360) -> Image.Image:
    """One labelled marker per (name, x, y); x on a log scale when ``log_x`` (latencies span orders of magnitude)."""
    font = _font()
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    xs = [math.log10(x) if log_x else x for _, x, _ in points]
    ys = [y for _, _, y in points]
    x_low, x_high = min(xs), max(xs)
    pad = max(0.15 * (x_high - x_low), 0.1)
    x_low, x_high = x_low - pad, x_high + pad
    y_low, y_high = max(0.0, min(ys) - 0.05), min(1.0, max(ys) + 0.05)
    if y_high - y_low < 0.1:
        y_low, y_high = max(0.0, y_low - 0.05), min(1.0, y_high + 0.05)
    x_of = lambda v: _LEFT + (v - x_low) / (x_high - x_low) * (width - _LEFT - _RIGHT)  # noqa: E731
    y_of = lambda v: height - _BOTTOM - (v - y_low) / (y_high - y_low) * (height - _TOP - _BOTTOM)  # noqa: E731
    x_ticks = [(v, f"{10 ** v:g}" if log_x else f"{v:g}")
               for v in (_log_ticks(x_low, x_high) if log_x else _round_ticks(x_low, x_high))]
    y_ticks = [(v, f"{100 * v:.0f}%") for v in _round_ticks(y_low, y_high)]
    _axes(draw, width, height, title, xlabel, ylabel, x_ticks, y_ticks, x_of, y_of)
    for index, ((name, _, y), x) in enumerate(zip(points, xs)):
        colour = _COLOURS[index % len(_COLOURS)]
        cx, cy = x_of(x), y_of(y)
        draw.ellipse([cx - 5, cy - 5, cx + 5, cy + 5], fill=colour)
        label_x = cx + 8 if cx + 8 + _text_width(draw, name, font) < width - 4 else cx - 8 - _text_width(draw, name, font)
        draw.text((label_x, cy - 18 if index % 2 == 0 else cy + 4), name, fill=colour, font=font)  # near points apart
    return canvas


def reliability_panel(bins: Sequence[dict], title: str, ece: float, width: int = 300, height: int = 300) -> Image.Image:
    """Accuracy per confidence bin (bars) against the diagonal a calibrated model follows."""
    font = _font()
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    x_of = lambda v: _LEFT + v * (width - _LEFT - _RIGHT)  # noqa: E731
    y_of = lambda v: height - _BOTTOM - v * (height - _TOP - _BOTTOM)  # noqa: E731
    ticks = [(v, f"{v:.1f}") for v in (0, 0.5, 1.0)]
    _axes(draw, width, height, f"{title} (ECE {ece:.3f})", "confidence", "", ticks, ticks, x_of, y_of)
    for entry in bins:
        if not entry["count"]:
            continue
        x0, x1 = x_of(entry["lower"]) + 1, x_of(entry["upper"]) - 1
        draw.rectangle([x0, y_of(entry["accuracy"]), x1, y_of(0)], fill=_COLOURS[0])
        draw.line([x0, y_of(entry["confidence"]), x1, y_of(entry["confidence"])], fill=_COLOURS[3], width=2)
    draw.line([x_of(0), y_of(0), x_of(1), y_of(1)], fill=(120, 120, 120))
    draw.text((_LEFT + 6, _TOP + 2), "bars: accuracy; red: mean confidence", fill="black", font=font)
    return canvas


def lines_panel(series: dict[str, Sequence[tuple[float, float]]], title: str, xlabel: str, ylabel: str,
                x_labels: Sequence[tuple[float, str]], width: int = 300, height: int = 260,
                legend: bool = True) -> Image.Image:
    """One line per name through its (x, y) points; y is an accuracy in [0, 1]."""
    font = _font()
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    xs = [x for points in series.values() for x, _ in points] or [0, 1]
    x_low, x_high = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    x_of = lambda v: _LEFT + 8 + (v - x_low) / (x_high - x_low) * (width - _LEFT - _RIGHT - 16)  # noqa: E731
    y_of = lambda v: height - _BOTTOM - v * (height - _TOP - _BOTTOM)  # noqa: E731
    _axes(draw, width, height, title, xlabel, ylabel, x_labels, [(v, f"{100 * v:.0f}%") for v in (0, 0.5, 1.0)],
          x_of, y_of)
    for index, (name, points) in enumerate(series.items()):
        colour = _COLOURS[index % len(_COLOURS)]
        pixels = [(x_of(x), y_of(y)) for x, y in points]
        if len(pixels) > 1:
            draw.line(pixels, fill=colour, width=2)
        for cx, cy in pixels:
            draw.ellipse([cx - 3, cy - 3, cx + 3, cy + 3], fill=colour)
        if legend:
            draw.text((width - _RIGHT - 120, _TOP + 2 + 13 * index), name[:20], fill=colour, font=font)
    return canvas


def side_by_side(panels: Sequence[Image.Image], columns: int) -> Image.Image:
    """Panels in rows of ``columns``."""
    width = max(p.width for p in panels)
    height = max(p.height for p in panels)
    rows = math.ceil(len(panels) / columns)
    canvas = Image.new("RGB", (width * min(columns, len(panels)), height * rows), "white")
    for index, panel in enumerate(panels):
        canvas.paste(panel, ((index % columns) * width, (index // columns) * height))
    return canvas
