"""Classifier checkpoints (teachers and students): save, load, validate.

A checkpoint is a plain dict of tensors, strings and numbers, so that
``torch.load(path, weights_only=True)`` reads it::

    {"format": "datafree.classifier", "version": 1, "arch": "resnet34",
     "num_classes": 10, "input_size": [3, 32, 32], "mean": [...], "std": [...],
     "classes": [...], "test_accuracy": 0.95 | None, "state_dict": {...}, "extra": {...}}

Images everywhere in datafree are in [0, 1]; the :class:`Normalized` wrapper
applies the checkpoint's mean/std, so synthesizers never need to know them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from datafree.errors import DatafreeError
from datafree.models import create_model
from datafree.utils.checkpoint import atomic_save, cpu_state_dict

FORMAT = "datafree.classifier"


class Normalized(nn.Module):
    """Applies per-channel (x - mean) / std, then the wrapped network."""

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.model = model
        # Not persistent: the state dict stays the bare network's, as users expect.
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model((images - self.mean) / self.std)


@dataclass
class ClassifierInfo:
    """What a checkpoint says about its network, beside the weights."""

    arch: str
    num_classes: int
    input_size: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: list[str] = field(default_factory=list)
    test_accuracy: float | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        self.input_size = tuple(int(v) for v in self.input_size)
        self.mean = tuple(float(v) for v in self.mean)
        self.std = tuple(float(v) for v in self.std)
        if len(self.mean) != self.input_size[0] or len(self.std) != self.input_size[0]:
            raise DatafreeError(
                f"mean/std have {len(self.mean)}/{len(self.std)} values but the input has "
                f"{self.input_size[0]} channels: give one value per channel."
            )
        if any(s <= 0 for s in self.std):
            raise DatafreeError(f"std must be positive, got {self.std}: fix the normalisation values.")


def save_classifier(path: str | Path, model: nn.Module, info: ClassifierInfo) -> Path:
    """Write ``model`` (bare or :class:`Normalized`) with ``info``, atomically."""
    net = model.model if isinstance(model, Normalized) else model
    return atomic_save(
        {
            "format": FORMAT,
            "version": 1,
            "arch": info.arch,
            "num_classes": int(info.num_classes),
            "input_size": list(info.input_size),
            "mean": list(info.mean),
            "std": list(info.std),
            "classes": list(info.classes),
            "test_accuracy": None if info.test_accuracy is None else float(info.test_accuracy),
            "state_dict": cpu_state_dict(net),
            "extra": dict(info.extra),
        },
        path,
    )


def read_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise DatafreeError(
            f"checkpoint {str(path)!r} does not exist: point teacher.checkpoint at a file written by "
            "'datafree train-teacher' (or a state dict with teacher.arch set)."
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, truncated files, foreign objects
        raise DatafreeError(
            f"checkpoint {str(path)!r} cannot be read safely ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}): "
            "save the model's state_dict (tensors only) or a datafree checkpoint."
        ) from None


def load_classifier(
    path: str | Path,
    arch: str | None = None,
    num_classes: int | None = None,
    input_size: Sequence[int] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    device: str | torch.device = "cpu",
) -> tuple[Normalized, ClassifierInfo]:
    """Load a datafree checkpoint, or a bare state dict when ``arch`` etc. are given.

    Values given explicitly override the checkpoint's metadata; the weights must
    then still fit the architecture, or a :class:`DatafreeError` says what differs.
    """
    blob = read_checkpoint(path)
    if isinstance(blob, dict) and blob.get("format") == FORMAT:
        meta = blob
        state = blob["state_dict"]
    elif isinstance(blob, dict) and blob and all(isinstance(v, torch.Tensor) for v in blob.values()):
        meta, state = {}, blob
    else:
        raise DatafreeError(
            f"{str(path)!r} is neither a datafree checkpoint nor a state dict of tensors: "
            "save model.state_dict() or use 'datafree train-teacher'."
        )
    arch = arch or meta.get("arch")
    num_classes = num_classes or meta.get("num_classes")
    if arch is None or num_classes is None:
        raise DatafreeError(
            f"{str(path)!r} is a bare state dict: set teacher.arch and teacher.num_classes "
            "(and teacher.mean / teacher.std) so that datafree knows what network it holds."
        )
    info = ClassifierInfo(
        arch=arch,
        num_classes=int(num_classes),
        input_size=tuple(input_size or meta.get("input_size") or (3, 32, 32)),
        mean=tuple(mean or meta.get("mean") or (0.5,) * 3),
        std=tuple(std or meta.get("std") or (0.5,) * 3),
        classes=list(meta.get("classes") or []),
        test_accuracy=meta.get("test_accuracy"),
        extra=dict(meta.get("extra") or {}),
    )
    net = create_model(info.arch, num_classes=info.num_classes)
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    # Compared before loading: load_state_dict raises a long RuntimeError on shape mismatches.
    mismatched = [
        f"{k}: {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or mismatched:
        details = []
        if missing:
            details.append(f"{len(missing)} missing keys (e.g. {missing[0]})")
        if unexpected:
            details.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})")
        if mismatched:
            details.append(f"{len(mismatched)} shape mismatches (e.g. {mismatched[0]})")
        saved = meta.get("arch")
        hint = f" The checkpoint says it holds {saved!r} with {meta.get('num_classes')} classes." if saved else ""
        raise DatafreeError(
            f"checkpoint {str(path)!r} does not match architecture {info.arch!r} with {info.num_classes} classes: "
            f"{'; '.join(details)}.{hint} Set teacher.arch / teacher.num_classes to the network the weights came from."
        )
    net.load_state_dict(state)
    model = Normalized(net, info.mean, info.std).to(device)
    return model, info


def freeze(model: nn.Module) -> nn.Module:
    """Eval mode, no parameter gradients: the teacher is never trained during distillation."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
