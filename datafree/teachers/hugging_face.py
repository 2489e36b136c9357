"""Networks from Hugging Face transformers, read without importing it: what their outputs and folders tell.

An image classifier of transformers (``AutoModelForImageClassification.from_pretrained(DIR)``, given as
``teacher.model._target_``) returns an output object holding ``logits`` rather than a tensor; its folder keeps
the class names (``config.json``'s ``id2label``) and the preprocessing it was trained with
(``preprocessor_config.json``: mean, std, size). Only duck typing is used, so any network that keeps these
the same way is read the same way, and transformers stays an import of the user's.
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

LOGITS = "logits"
PREPROCESSOR = "preprocessor_config.json"
DEFAULT_LABEL = re.compile(r"LABEL_\d+")  # what transformers names classes nobody named


def logits_field(output: Any) -> str | None:
    """``"logits"`` when ``output`` is not a tensor but holds one under that name (transformers' ModelOutput, a
    dict, an object with the attribute), else None."""
    if isinstance(output, torch.Tensor):
        return None
    held = output.get(LOGITS) if isinstance(output, Mapping) else getattr(output, LOGITS, None)
    return LOGITS if isinstance(held, torch.Tensor) else None


def read_field(output: Any, field: str) -> torch.Tensor:
    return output[field] if isinstance(output, Mapping) else getattr(output, field)


def class_names(net: nn.Module) -> list[str]:
    """The class names in a transformers network's configuration (``id2label``), in class order; none when it
    has none or only transformers' placeholders (LABEL_0, LABEL_1, ...)."""
    labels = getattr(getattr(net, "config", None), "id2label", None)
    if not isinstance(labels, Mapping) or not labels:
        return []
    try:
        ordered = sorted((int(k), str(v)) for k, v in labels.items())
    except (TypeError, ValueError):
        return []
    names = [name for _, name in ordered]
    if [k for k, _ in ordered] != list(range(len(ordered))) or all(DEFAULT_LABEL.fullmatch(n) for n in names):
        return []
    return names


def preprocessing(net: nn.Module) -> dict:
    """What the folder a transformers network was loaded from says its inputs were: ``{"name", "input_size",
    "mean", "std"}`` for :func:`datafree.teachers.spec.resolve_input_spec` (any of them may be missing), read from
    ``preprocessor_config.json`` next to its ``config.json``; empty when there is no such folder or file."""
    config = getattr(net, "config", None)
    folder = getattr(config, "_name_or_path", None) or getattr(config, "name_or_path", None)
    if not folder or not (Path(str(folder)).expanduser() / PREPROCESSOR).is_file():
        return {}
    path = Path(str(folder)).expanduser() / PREPROCESSOR
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    found: dict = {"name": f"its {PREPROCESSOR}"}
    channels = int(getattr(config, "num_channels", 3) or 3)
    if saved.get("do_normalize", True) and _floats(saved.get("image_mean"), channels) and _floats(saved.get("image_std"), channels):
        found["mean"], found["std"] = tuple(map(float, saved["image_mean"])), tuple(map(float, saved["image_std"]))
    elif not saved.get("do_normalize", True):
        found["mean"], found["std"] = (0.0,) * channels, (1.0,) * channels
    side = _size(saved.get("crop_size") if saved.get("do_center_crop") else None) or _size(saved.get("size"))
    if side:
        found["input_size"] = (channels, *side)
    return found


def _floats(values: Any, channels: int) -> bool:
    return isinstance(values, (list, tuple)) and len(values) == channels and all(isinstance(v, (int, float)) for v in values)


def _size(size: Any) -> tuple[int, int] | None:
    """(height, width) from a preprocessor's size: an int, {height, width}, or {shortest_edge} (a square crop)."""
    if isinstance(size, int):
        return size, size
    if isinstance(size, Mapping):
        if isinstance(size.get("height"), int) and isinstance(size.get("width"), int):
            return int(size["height"]), int(size["width"])
        if isinstance(size.get("shortest_edge"), int):
            return int(size["shortest_edge"]), int(size["shortest_edge"])
    return None
