"""The student's BatchNorm momentum for a distillation run.

A student's running statistics are what its evaluations see and what the synthesizers' adversarial queries see
(they run the student in eval mode so that synthetic batches do not move those statistics). Training itself
uses each batch's own statistics, so the momentum changes no gradient. torchvision builds MobileNetV3 with a
momentum of 0.01 and MNASNet with 0.0003 (TensorFlow's ImageNet settings), which makes the running statistics
lag the weights by hundreds to thousands of steps: a fresh MobileNetV3-Large, its weights held fixed, still
answered every image alike in eval mode after 400 training-mode batches (docs/benchmarks.md). In a short run
at a high rate the student then looks dead to its evaluations, and the generator's adversarial term sees a
constant student.
"""
from __future__ import annotations

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

# PyTorch's default, which the zoo's students and most torchvision and timm networks use.
RUN_MOMENTUM = 0.1


def set_bn_momentum(student: nn.Module, setting: float | str) -> str | None:
    """Apply ``trainer.bn_momentum`` to ``student``'s BatchNorm layers: ``auto`` raises every momentum below 0.1
    (or None, a cumulative average) to 0.1, ``keep`` leaves them, a number sets every one. What changed, as a log
    line, or None when nothing did."""
    if setting == "keep":
        return None
    target = RUN_MOMENTUM if setting == "auto" else float(setting)
    layers = [m for m in student.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    changed = [m for m in layers if m.momentum != target and (
        setting != "auto" or m.momentum is None or m.momentum < RUN_MOMENTUM)]
    if not changed:
        return None
    before = sorted({"None" if m.momentum is None else f"{m.momentum:.3g}" for m in changed})
    for m in changed:
        m.momentum = target
    return (f"student: BatchNorm momentum {'/'.join(before)} -> {target:g} in {len(changed)} of {len(layers)} "
            f"layers for this run (trainer.bn_momentum={setting}): its running statistics, which evaluations and "
            "the synthesizer's queries use, then follow its weights; training uses each batch's own statistics")
