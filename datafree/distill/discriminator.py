"""Adversarial KD with a learned discriminator (Xu et al. 2017; Wang et al. 2018, KDGAN).

The student plays the generator: a small discriminator D learns to tell the
teacher's outputs (real) from the student's (fake) on the same batch, and the
student is trained to fool it, beside the KD loss. Both sides use the logistic
loss: D minimises ``softplus(-D(teacher)) + softplus(D(student))``, the student
the non-saturating ``softplus(-D(student))``.

One update round per student step: ``steps`` D updates on the batch's detached
outputs, then the student's term through D's *detached* parameters, so neither
the student's loss moves D nor D's loss reaches the student or the teacher.
``every`` > 1 updates D only every that many student steps; the off rounds are
skipped on the device (through the fused optimiser's ``found_inf`` flag, like a
non-finite step), so the round has one shape and no host read and can be part
of a captured CUDA graph.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from datafree.errors import DatafreeError
from datafree.utils.nonfinite import NonFiniteGuard, fused_adam, fused_sgd, load_optimizer_state

KEYS = ("weight", "embedding", "hidden", "arch", "optimizer", "lr", "betas", "momentum", "weight_decay", "steps", "every")
METRICS = ("discriminator_loss", "discriminator_accuracy")


def mlp(in_features: int, hidden=(256, 256), negative_slope: float = 0.2) -> nn.Sequential:
    """The default discriminator: Linear + LeakyReLU per hidden width, then one logit per sample."""
    layers: list[nn.Module] = []
    width = int(in_features)
    for size in hidden:
        layers += [nn.Linear(width, int(size)), nn.LeakyReLU(negative_slope)]
        width = int(size)
    layers.append(nn.Linear(width, 1))
    return nn.Sequential(*layers)


def _positive_int(value, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DatafreeError(f"trainer.discriminator.{key} must be an int >= 1, not {value!r}.")
    return value


class Adversary:
    """The discriminator, its optimiser and its bookkeeping; ``update`` it, then add ``student_loss`` to the student's.

    ``teacher_width`` / ``student_width``: the widths of what is compared. Where they differ
    (penultimate features of different networks), a linear adapter maps the student's to the
    teacher's width; it trains with the student (:meth:`student_parameters`).
    ``arch``: a callable ``arch(in_features) -> nn.Module`` giving one logit per sample, in
    place of :func:`mlp` with ``hidden``. ``capturable``: the optimiser keeps its step on the
    device, for a student step captured as a CUDA graph.
    """

    def __init__(self, teacher_width: int, student_width: int, device: torch.device, *, weight: float,
                 hidden=(256, 256), arch: Callable[[int], nn.Module] | None = None, optimizer: str = "adam",
                 lr: float = 2e-4, betas=(0.5, 0.999), momentum: float = 0.0, weight_decay: float = 0.0, steps: int = 1,
                 every: int = 1, capturable: bool = False, max_nonfinite: int):
        if not weight > 0 or not lr > 0 or weight_decay < 0:
            raise DatafreeError(f"trainer.discriminator needs weight > 0, lr > 0 and weight_decay >= 0 (got {weight}, "
                                f"{lr}, {weight_decay}).")
        self.weight = float(weight)
        self.steps, self.every = _positive_int(steps, "steps"), _positive_int(every, "every")
        if arch is not None:
            self.net = arch(int(teacher_width))
            if not isinstance(self.net, nn.Module):
                raise DatafreeError(f"trainer.discriminator.arch must build an nn.Module from the input width, it gave "
                                    f"{type(self.net).__name__}.")
        else:
            if any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden):
                raise DatafreeError(f"trainer.discriminator.hidden lists the hidden layers' widths (ints >= 1, [] for "
                                    f"a linear discriminator), not {list(hidden)}.")
            self.net = mlp(teacher_width, tuple(hidden))
        self.net = self.net.to(device)
        self._check_output(teacher_width, device)
        self.adapter = (nn.Identity() if teacher_width == student_width
                        else nn.Linear(int(student_width), int(teacher_width), bias=False)).to(device)
        params = list(self.net.parameters())
        if optimizer == "adam":
            self.optimizer = fused_adam(params, lr=lr, weight_decay=weight_decay, betas=tuple(float(b) for b in betas),
                                        capturable=capturable)
        elif optimizer == "sgd":
            self.optimizer = fused_sgd(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=False)
        else:
            raise DatafreeError(f"unknown trainer.discriminator.optimizer {optimizer!r}: choose 'adam' or 'sgd'.")
        self.guard = NonFiniteGuard(device, (), max_nonfinite, what="discriminator step")
        self.rounds = torch.zeros((), device=device)  # update rounds so far; ``every`` reads it on the device

    def _check_output(self, width: int, device) -> None:
        with torch.no_grad():
            out = self.net(torch.zeros(2, int(width), device=device))
        if out.numel() != 2:
            raise DatafreeError(f"the discriminator must give one logit per sample: for 2 inputs of width {width} it "
                                f"gave shape {tuple(out.shape)}.")

    def student_parameters(self) -> list[nn.Parameter]:
        """What the student's optimiser trains: the width adapter, when there is one."""
        return list(self.adapter.parameters())

    def update(self, teacher: torch.Tensor, student: torch.Tensor) -> torch.Tensor:
        """``steps`` discriminator updates on the detached outputs; returns [loss, accuracy] before the first one.

        Accuracy is the mean of the share of teacher outputs called real and of student outputs
        called fake: 0.5 is a discriminator that cannot tell them apart.
        """
        real_in, fake_in = teacher.detach().float(), self.adapter(student.float()).detach()
        off = (torch.remainder(self.rounds, self.every) != 0).float()  # 1: not this round's turn, skip on the device
        self.rounds += 1
        metrics = None
        for _ in range(self.steps):
            real, fake = self.net(real_in).reshape(-1), self.net(fake_in).reshape(-1)
            loss = F.softplus(-real).mean() + F.softplus(fake).mean()
            if metrics is None:
                accuracy = 0.5 * ((real > 0).float().mean() + (fake < 0).float().mean())
                metrics = torch.stack([loss.detach(), accuracy.detach()])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grads = [p.grad for group in self.optimizer.param_groups for p in group["params"] if p.grad is not None]
            bad = self.guard.flag(loss, grads)
            self.guard.apply(self.optimizer, torch.maximum(bad, off))
            self.guard.count(bad, {})
        return metrics

    def student_loss(self, student: torch.Tensor) -> torch.Tensor:
        """``weight * softplus(-D(student))``: gradients reach the student (and the adapter), never D."""
        frozen = {name: p.detach() for name, p in self.net.named_parameters()}
        logits = functional_call(self.net, frozen, (self.adapter(student.float()),)).reshape(-1)
        return self.weight * F.softplus(-logits).mean()

    def state_dict(self) -> dict:
        return {"net": self.net.state_dict(), "adapter": self.adapter.state_dict(),
                "optimizer": self.optimizer.state_dict(), "guard": self.guard.state_dict(), "rounds": self.rounds}

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["net"])
        self.adapter.load_state_dict(state["adapter"])
        load_optimizer_state(self.optimizer, state["optimizer"])
        self.guard.load_state_dict(state["guard"])
        self.rounds.copy_(state["rounds"])
