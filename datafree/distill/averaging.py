"""A running average of the student's weights (``trainer.ema_decay``): what a run evaluates and delivers.

A student distilled against a moving generator does not settle: on WRN-40-2 -> WRN-16-2, alone on an H200 for
600 s, evaluations 50 rounds apart swung by up to 3.5 points in the last 90 s, at a learning rate of 0.011 and
falling (docs/benchmarks.md), so which of them the run ends on is partly luck. An exponential moving average of the weights
(Polyak averaging; timm's ModelEma) is the usual remedy: the average is evaluated, saved as student.pt and handed
on at the end, while the student itself goes on training as before (the generator keeps querying it). Measured
alone on an H200 for 600 s (one seed each): a WRN-16-2's weights ended at 81.41% and their average (decay 0.999)
at 87.77%, a WRN-40-1's at 81.80% and 87.19%; experiment=fast turns it on.

The BatchNorm running statistics are averaged with the weights; integer buffers (the count of batches seen) are
copied. An average of statistics is not the statistics of the averaged weights, though: alone on an H100 for 600 s,
a MobileNetV2's average fell from 84.45% to 78.55% over the run's last 100 s while its weights held at 84.5-85.6%;
its BatchNorm statistics re-estimated afterwards on the replay bank (200 batches) gave the same average 87.45%
(docs/benchmarks.md). So before each evaluation (and so before every student.pt and the student delivered) the
trainer re-estimates the average's statistics (:func:`reestimate_batchnorm`, ``trainer.ema_bn_batches`` batches of
the student's own inputs: SWA's ``update_bn``, "precise BatchNorm"); the averaged ones remain where the source keeps
no inputs to draw.

The update runs on the device, inside the captured student step, with the decay as a device tensor:
``min(ema_decay, (1 + n) / (10 + n))`` after ``n`` updates, so that the average is not held near the random initial
weights at the start of a short run (timm's warm-up of the decay).
"""
from __future__ import annotations

import copy
from typing import Iterable

import torch
from torch import nn

from datafree.ops.hooks import batchnorm_layers
from datafree.utils import dist
from datafree.utils.device import autocast


_HOOKS = ("_forward_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called", "_forward_pre_hooks",
          "_forward_pre_hooks_with_kwargs", "_backward_hooks", "_backward_pre_hooks")


class WeightAverage:
    """An exponential moving average of ``model``'s floating-point parameters and buffers, kept in a copy of it."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 < float(decay) < 1.0:
            raise ValueError(f"the averaging decay must be in (0, 1), got {decay!r}")
        self.decay = float(decay)
        # The copy is only evaluated and saved: its forward and backward hooks start empty, so that whatever a hook
        # belongs to (a user's probe, with the networks it holds) is neither copied nor called by the copy.
        memo = {id(hooks): type(hooks)() for sub in model.modules() for name in _HOOKS
                if isinstance(hooks := getattr(sub, name, None), dict)}
        self.module = copy.deepcopy(model, memo)
        self.module.eval().requires_grad_(False)
        source = dict(model.state_dict(keep_vars=True))
        target = dict(self.module.state_dict(keep_vars=True))
        floats = [name for name, t in source.items() if t.is_floating_point()]
        self._source = [source[name].detach() for name in floats]
        self._target = [target[name].detach() for name in floats]
        counts = [name for name in source if name not in floats]
        self._count_source = [source[name] for name in counts]
        self._count_target = [target[name] for name in counts]
        self.updates = torch.zeros((), device=self._target[0].device if self._target else "cpu")

    @torch.no_grad()
    def update(self) -> None:
        """Move the average toward the model's current values (device work only: a captured step may hold it)."""
        self.updates += 1
        weight = 1.0 - torch.clamp((1.0 + self.updates) / (10.0 + self.updates), max=self.decay)
        delta = torch._foreach_sub(self._source, self._target)
        torch._foreach_mul_(delta, weight)
        torch._foreach_add_(self._target, delta)
        if self._count_target:  # one launch for all the layers' counts
            torch._foreach_copy_(self._count_target, self._count_source)

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "updates": self.updates.clone()}

    def load_state_dict(self, state: dict) -> None:
        """In place (a captured step holds these tensors)."""
        self.module.load_state_dict(state["module"])
        self.updates.copy_(state["updates"])


@torch.no_grad()
def reestimate_batchnorm(model: nn.Module, batches: Iterable[torch.Tensor], device: torch.device,
                         amp: bool = True) -> int:
    """Replace ``model``'s BatchNorm running statistics, in place, by their plain mean over ``batches`` (each
    batch weighs the same: momentum None), the model otherwise unchanged and left in the mode it was in. Under
    torchrun the ranks' estimates are averaged (each rank drew from its own inputs). Returns the batches used
    (0: a model without BatchNorm, left untouched)."""
    layers = batchnorm_layers(model)
    if not layers:
        return 0
    momenta = [layer.momentum for layer in layers]
    was_training = model.training
    used = 0
    try:
        for images in batches:
            if not used:  # in place (a captured student step holds these tensors), and only once there is a batch
                for layer in layers:
                    layer.reset_running_stats()
                    layer.momentum = None
                model.train()
            with autocast(device, amp):
                model(images)
            used += 1
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
        model.train(was_training)
    if dist.active():  # every rank has the same layers and draws as many batches
        for layer in layers:
            dist.all_reduce_(layer.running_mean).div_(dist.world_size())
            dist.all_reduce_(layer.running_var).div_(dist.world_size())
    return used
