"""What a teacher takes and gives: channels, height, width, classes, normalisation.

Each value comes from the first of: the recipe (or the Python call), the
checkpoint's metadata, the data set the run uses, the source's convention
(torchvision: 224 px, ImageNet statistics), and finally inspection of the
network itself. Every value not given explicitly is reported in a note, so
the user sees what was assumed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from datafree.errors import DatafreeError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Tried in this order when nothing says how large the inputs are (grey images: MNIST's 28 first).
COMMON_SIZES = {1: (28, 32, 64, 96, 128, 224), 3: (32, 224, 64, 96, 128, 28)}


@dataclass
class DataHint:
    """What the run's real data set says (its test split), used where the teacher says nothing."""

    channels: int | None = None
    height: int | None = None
    width: int | None = None
    num_classes: int | None = None


def first_input_channels(net: nn.Module) -> int | None:
    """in_channels of the first 4-D weight (the first convolution), also for TorchScript modules."""
    for name, param in net.named_parameters():
        if name.endswith("weight") and param.dim() == 4:
            return int(param.shape[1])
    return None


def runs_on(net: nn.Module, shape: Sequence[int]) -> bool:
    try:
        with torch.no_grad():
            net(torch.zeros(2, *shape, device=_device_of(net)))
        return True
    except Exception:  # noqa: BLE001 - any failure means "not this size"
        return False


def _device_of(net: nn.Module) -> torch.device:
    for tensor in list(net.parameters()) + list(net.buffers()):
        return tensor.device
    return torch.device("cpu")


def resolve_input_spec(
    net: nn.Module,
    *,
    declared: dict,
    meta: dict,
    hint: DataHint | None,
    convention: dict,
) -> tuple[tuple[int, int, int], tuple[float, ...], tuple[float, ...], list[str]]:
    """(input_size, mean, std, notes) for ``net`` (bare, on its device, in eval mode).

    ``declared``/``meta``/``convention`` hold any of ``input_size``, ``mean``, ``std``.
    """
    hint = hint or DataHint()
    notes: list[str] = []
    input_size = declared.get("input_size") or meta.get("input_size") or None
    if input_size is not None:
        size_source = "teacher.input_size" if declared.get("input_size") else "the checkpoint's input_size"
        input_size = tuple(int(v) for v in input_size)
        if len(input_size) != 3:
            raise DatafreeError(
                f"teacher.input_size must be [channels, height, width], got {list(input_size)}: e.g. [3, 32, 32]."
            )
    else:
        input_size, size_source = _infer_input_size(net, hint, convention, notes)
    channels = input_size[0]
    mean = declared.get("mean") or meta.get("mean")
    std = declared.get("std") or meta.get("std")
    given = "teacher.mean / teacher.std" if declared.get("mean") or declared.get("std") else "the checkpoint's mean / std"
    if mean is None or std is None:
        if convention.get("mean") is not None and channels == len(convention["mean"]):
            mean, std = mean or convention["mean"], std or convention["std"]
            notes.append(f"normalisation not given: using {convention['name']}'s mean {list(mean)} and std {list(std)}")
        else:
            mean, std = mean or (0.0,) * channels, std or (1.0,) * channels
            notes.append(
                f"normalisation not given: the teacher gets pixels in [0, 1] unchanged (mean {list(mean)}, std {list(std)}); "
                "set teacher.mean / teacher.std if it was trained on normalised inputs"
            )
    if len(mean) != channels or len(std) != channels:
        raise DatafreeError(
            f"the normalisation has {len(mean)} mean and {len(std)} std value(s) ({given}) but the teacher takes "
            f"{channels}-channel inputs ({size_source}): give one value per channel, e.g. "
            f"teacher.mean=[{','.join(['0.5'] * channels)}] teacher.std=[{','.join(['0.25'] * channels)}]"
            f"{'' if size_source == 'teacher.input_size' else ', or set teacher.input_size if the channel count is wrong'}."
        )
    return input_size, tuple(float(v) for v in mean), tuple(float(v) for v in std), notes


def _infer_input_size(net: nn.Module, hint: DataHint, convention: dict,
                      notes: list[str]) -> tuple[tuple[int, int, int], str]:
    """(input size, where it came from). The network's first convolution knows its channels best."""
    channels = first_input_channels(net) or hint.channels or (convention.get("input_size") or (None,))[0]
    if hint.height and hint.width:
        size = (int(channels or 3), hint.height, hint.width)
        notes.append(f"input size not given: using the data set's {size[1]}x{size[2]} images with {size[0]} channel(s)")
        return size, "the test images' size"
    if convention.get("input_size"):
        size = (int(channels or convention["input_size"][0]), *(int(v) for v in convention["input_size"][1:]))
        notes.append(f"input size not given: using {convention['name']}'s usual {size[0]}x{size[1]}x{size[2]}")
        return size, f"{convention['name']}'s usual input size"
    candidates = [int(channels)] if channels else [3, 1]
    for c in candidates:
        for side in COMMON_SIZES.get(c, COMMON_SIZES[3]):
            if runs_on(net, (c, side, side)):
                notes.append(
                    f"input size not given: probed the network, which runs on {c}x{side}x{side} (the first of the "
                    f"common sizes it accepts); set teacher.input_size if it was trained on another size"
                )
                return (c, side, side), "probed"
    raise DatafreeError(
        "the teacher's input size is not given and the network ran on none of the common sizes "
        f"({', '.join(str(s) for s in COMMON_SIZES[3])} px): set teacher.input_size=[channels, height, width]."
    )
