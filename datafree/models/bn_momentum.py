"""A network's BatchNorm momentum for one run: ``trainer.bn_momentum`` (the student in distill) and
``teacher.train.bn_momentum`` (the network train-teacher trains).

A network's running statistics are what eval mode uses: a student's evaluations and the synthesizers'
adversarial queries (they run the student in eval mode so that synthetic batches do not move those statistics);
for a teacher, its evaluations and everything distillation later asks of it, its BatchNorm prior included.
Training itself uses each batch's own statistics, so the momentum changes no gradient.

torchvision builds MobileNetV3 with a momentum of 0.01 and MNASNet with 0.0003 (TensorFlow's ImageNet settings),
which makes the running statistics lag the weights by hundreds to thousands of steps: a fresh MobileNetV3-Large,
its weights held fixed, still answered every image alike in eval mode after 400 training-mode batches
(docs/benchmarks.md). In a short run at a high rate the student then looks dead to its evaluations, and the
generator's adversarial term sees a constant student; a MobileNetV3-Small teacher trained for 6 epochs reached the
training loss it reached at 0.1 and answered one class for nearly every test image.
"""
from __future__ import annotations

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

# PyTorch's default, which the zoo's students and most torchvision and timm networks use.
RUN_MOMENTUM = 0.1


def _tracked(model: nn.Module) -> list[_BatchNorm]:
    """The BatchNorm layers that keep running statistics (those eval mode reads)."""
    return [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]


def _lagging(layer: _BatchNorm) -> bool:
    """A momentum below 0.1, or None (a cumulative average): the running statistics trail the weights."""
    return layer.momentum is None or layer.momentum < RUN_MOMENTUM


def set_bn_momentum(model: nn.Module, setting: float | str, who: str = "student",
                    key: str = "trainer.bn_momentum") -> str | None:
    """Apply ``setting`` (the recipe's ``key``) to ``model``'s BatchNorm layers: ``auto`` raises every momentum below
    0.1 (or None, a cumulative average) to 0.1, ``keep`` leaves them, a number sets every one. What changed, as a
    log line naming ``who``, or None when nothing did."""
    if setting == "keep":
        return None
    target = RUN_MOMENTUM if setting == "auto" else float(setting)
    layers = _tracked(model)
    changed = [m for m in layers if m.momentum != target and (setting != "auto" or _lagging(m))]
    if not changed:
        return None
    before = sorted({"None" if m.momentum is None else f"{m.momentum:.3g}" for m in changed})
    for m in changed:
        m.momentum = target
    return (f"{who}: BatchNorm momentum {'/'.join(before)} -> {target:g} in {len(changed)} of {len(layers)} "
            f"layers for this run ({key}={setting}): its running statistics, which eval mode uses, then follow its "
            "weights; training uses each batch's own statistics")


def lags(model: nn.Module) -> bool:
    """Whether any BatchNorm layer of ``model`` still trails its weights (a momentum below 0.1, or None)."""
    return any(_lagging(m) for m in _tracked(model))
