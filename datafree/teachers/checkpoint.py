"""Classifier checkpoints (teachers and students): save, load, validate.

A checkpoint is a plain dict of tensors, strings and numbers, so that
``torch.load(path, weights_only=True)`` reads it::

    {"format": "datafree.classifier", "version": 1, "arch": "resnet34",
     "num_classes": 10, "input_size": [3, 32, 32], "mean": [...], "std": [...],
     "classes": [...], "test_accuracy": 0.95 | None, "state_dict": {...}, "extra": {...}}

Images everywhere in datafree are in [0, 1]; the :class:`Normalized` wrapper
(``teachers/network.py``) applies the checkpoint's mean/std.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from datafree.errors import DatafreeError
from datafree.teachers.network import Normalized
from datafree.utils.checkpoint import atomic_save, cpu_state_dict

FORMAT = "datafree.classifier"
WEIGHT_SUFFIXES = (".pt", ".pth", ".ts", ".bin", ".safetensors")  # named when a folder is given for a file
log = logging.getLogger("datafree")


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
        if len(self.input_size) != 3 or min(self.input_size) < 1:
            raise DatafreeError(
                f"input_size must be [channels, height, width] with positive values, got {list(self.input_size)}: "
                "e.g. teacher.input_size=[3,32,32] (or [1,28,28] for grey images)."
            )
        if int(self.num_classes) < 1:
            raise DatafreeError(f"num_classes must be >= 1, got {self.num_classes}: set it to the teacher's number of outputs.")
        self.num_classes = int(self.num_classes)
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


def saved_label(blob) -> str | None:
    """The label of the network a datafree checkpoint holds (its ``arch``: ``torchvision:resnet18``, ``resnet34``,
    ``pkg.Net``); None for any other file, which does not say."""
    is_ours = isinstance(blob, dict) and blob.get("format") == FORMAT
    return str(blob["arch"]) if is_ours and blob.get("arch") else None


def read_checkpoint(path: str | Path, trust: bool = False, what: str = "teacher.checkpoint"):
    """``torch.load`` with ``weights_only=True``, unless the user trusts the file; a safetensors file's tensors.

    A pickle can run arbitrary code while it loads, so files that hold whole
    modules or other Python objects are refused unless ``trust`` is set. ``what``
    is the key the file was given under (``student.checkpoint``): every error names it,
    and only a teacher's offers ``teacher.trust_checkpoint`` and ``teacher.source=torchscript``.
    """
    path = require_file(path, what, "the weights file")
    teacher = what.startswith("teacher.")
    # timm's and Hugging Face's weights: tensors only, nothing to unpickle. torch.load reads them from 2.14 on, and
    # only by the .safetensors suffix; read here by content, for every torch the project supports.
    if is_safetensors_file(path):
        return _read_safetensors(path, what)
    if is_torchscript_archive(path):
        raise DatafreeError(
            f"{what} {str(path)!r} is a TorchScript archive, not a checkpoint: "
            + ("load it with teacher.source=torchscript." if teacher else
               "give the network's weights, saved with torch.save(model.state_dict(), path).")
        )
    try:
        # timm's train.py stores its argparse.Namespace beside the weights: plain values, safe to rebuild (allowed
        # from torch 2.5 on, which has safe_globals)
        allowed = getattr(torch.serialization, "safe_globals", None)
        with allowed([argparse.Namespace]) if allowed else contextlib.nullcontext():
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, truncated files, foreign objects
        if not _refused_as_unsafe(exc):  # the reader's own reason is about its internals
            raise DatafreeError(
                f"{what} {str(path)!r} cannot be read: the file is damaged or not a PyTorch checkpoint; save it again "
                "with torch.save(model.state_dict(), path)."
            ) from None
        if not trust:
            raise DatafreeError(
                f"{what} {str(path)!r} holds pickled Python objects (e.g. a whole nn.Module), and unpickling them "
                "runs code stored in the file, which is unsafe for files you did not make yourself: save "
                "model.state_dict() instead" + (", or set teacher.trust_checkpoint=true if you trust its origin."
                                                if teacher else ".")
            ) from None
    log.warning("loading %s with weights_only=False because trust_checkpoint=true: this runs any code the file holds", path)
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise DatafreeError(
            f"{what} {str(path)!r} cannot be unpickled ({type(exc).__name__}: {str(exc)[:160]}): the classes it "
            "names must be importable (put their package on PYTHONPATH)."
        ) from None


def require_file(path: str | Path, key: str, what: str) -> Path:
    """``path`` as a Path when it is a file; else one error saying whether it is missing or a folder."""
    path = Path(path).expanduser()
    if path.is_dir():
        inside = sorted(p.name for p in path.iterdir() if p.suffix in WEIGHT_SUFFIXES)[:3]
        found = f" (it holds {', '.join(inside)})" if inside else ""
        raise DatafreeError(f"{key} {str(path)!r} is a folder, not a file{found}: point {key} at {what} inside it.")
    if not path.is_file():
        raise DatafreeError(f"{key} {str(path)!r} does not exist: point {key} at {what}.")
    return path


def is_safetensors_file(path: Path) -> bool:
    """A safetensors file starts with its JSON header's length (8 bytes, little-endian) and then the header, a JSON
    object; torch.save files start with a zip or pickle signature. Read by content: Hugging Face names them
    ``model.safetensors``, users rename them."""
    with open(path, "rb") as file:
        head = file.read(9)
    if len(head) < 9 or head[8:9] != b"{":
        return False
    return 2 <= int.from_bytes(head[:8], "little") <= path.stat().st_size - 8


def _read_safetensors(path: Path, what: str) -> dict[str, torch.Tensor]:
    """The flat state dict of a safetensors file (on the CPU); one line when the package or the file fails."""
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise DatafreeError(
            f"{what} {str(path)!r} is a safetensors file, which needs the safetensors package: pip install safetensors "
            '(timm brings it too).'
        ) from None
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # a truncated file or a header that does not describe its data
        raise DatafreeError(
            f"{what} {str(path)!r} cannot be read as a safetensors file ({type(exc).__name__}: {str(exc)[:160]}): the "
            "file is damaged or incomplete; copy or download it again."
        ) from None


def _refused_as_unsafe(exc: Exception) -> bool:
    # torch raises UnpicklingError("Weights only load failed ... Unsupported global ...") for objects outside
    # its allow-list; a damaged or foreign file fails with another reason (e.g. "Unsupported operand").
    text = str(exc).lower()
    return isinstance(exc, pickle.UnpicklingError) and "weights only" in text and "global" in text


def is_torchscript_archive(path: Path) -> bool:
    """TorchScript archives are zip files with a ``code/`` folder; torch.save checkpoints have none."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name or name.startswith("code/") for name in archive.namelist())
