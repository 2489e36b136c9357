"""Skip optimizer steps whose loss or gradients are NaN/Inf, decided on the device, counted, checked later.

How a step is skipped without a host sync: the optimizers are built ``fused=True``
and given a ``found_inf`` flag, the mechanism ``torch.amp.GradScaler`` uses. The
flag is 1.0 when the loss or any gradient is not finite
(``torch._amp_foreach_non_finite_check_and_unscale_`` sets it in one pass over the
gradients); the fused kernel then leaves weights, momentum buffers and Adam's
moments and step count untouched. Zeroing gradients instead would not do:
weight decay and momentum would still move the weights.

The counts (in all, per loss term, and the current and the longest run in a row since
the last check)
stay on the device; the loop reads them with its losses every ``log_every`` steps
and calls :meth:`NonFiniteGuard.check`, which stops the run once ``max_in_row``
steps in a row were skipped.

Under torchrun a guard over a replicated model (``shared``: the DDP student, a generator
trained against it) takes the largest flag over the ranks, so that every rank skips the
same steps and the copies stay identical; a per-rank optimiser's guard decides alone.
"""
from __future__ import annotations

import torch

from datafree.errors import DatafreeError
from datafree.utils import dist


def fused_sgd(params, *, lr: float, momentum: float, weight_decay: float, nesterov: bool) -> torch.optim.SGD:
    optimizer = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov, fused=True)
    if momentum:
        # Fused SGD allocates its momentum buffers uninitialised (empty_like) on the first step and fills them in
        # the kernel, which a skipped first step never runs: garbage momentum from then on. Zeros from the start
        # give the same first update (buffer = 0 * momentum + grad = grad, dampening is 0) and survive a skip.
        for group in optimizer.param_groups:
            for p in group["params"]:
                optimizer.state[p]["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
    return optimizer


def fused_optimizer(name: str, params, *, lr: float, momentum: float, weight_decay: float) -> torch.optim.Optimizer:
    """A student's optimiser by its recipe name (``trainer.optimizer``): Nesterov SGD or Adam, fused."""
    if name == "sgd":
        return fused_sgd(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=momentum > 0)
    if name == "adam":
        return fused_adam(params, lr=lr, weight_decay=weight_decay)
    raise DatafreeError(f"unknown trainer.optimizer {name!r}: choose 'sgd' or 'adam'.")


def weight_decay_groups(params: list[torch.nn.Parameter], decay_norm_and_bias: bool) -> list:
    """``params`` as an optimiser takes them: one group (every parameter decayed by the optimiser's weight decay),
    or, without ``decay_norm_and_bias``, the parameters of one dimension (biases, normalisation layers' weights and
    shifts) in a second group that is not decayed, as timm's optimisers do by default: decay pulls a normalisation
    layer's scale toward zero, which shrinks what the layer passes on, not how sharp its filters are."""
    if decay_norm_and_bias:
        return list(params)
    spared = [p for p in params if p.ndim <= 1]
    decayed = [p for p in params if p.ndim > 1]
    return [group for group in ({"params": decayed}, {"params": spared, "weight_decay": 0.0}) if group["params"]]


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """``optimizer.load_state_dict(state)``, each saved buffer shaped like its parameter laid out as the parameter is.

    A fused step pairs a parameter with its momentum or Adam moments element by element in memory order, not by
    index: buffers saved NCHW beside a parameter that is now channels_last (a run saved by a version that kept the
    network or the generator NCHW, or on a device where it ran so) would move each weight by another weight's
    moments, silently (``tests/utils/test_nonfinite.py`` fails so without it). ``load_state_dict`` keeps the saved
    strides, so they are set here.
    """
    optimizer.load_state_dict(state)
    for group in optimizer.param_groups:
        for p in group["params"]:
            buffers = optimizer.state.get(p, {})
            for key, value in buffers.items():
                if isinstance(value, torch.Tensor) and value.shape == p.shape and value.stride() != p.stride():
                    buffers[key] = torch.empty_like(p, dtype=value.dtype).copy_(value)


def fused_adam(params, *, lr: float, weight_decay: float = 0.0, betas=(0.9, 0.999),
               capturable: bool = False) -> torch.optim.Adam:
    """``capturable``: the step count lives on the device, so the step can be captured in a CUDA graph."""
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, betas=betas, fused=True, capturable=capturable)


class NonFiniteGuard:
    """Device-side bookkeeping of skipped steps for one optimizer and a fixed set of loss terms."""

    def __init__(self, device: torch.device, terms: tuple[str, ...], max_in_row: int = 20, what: str = "step",
                 shared: bool = False):
        if isinstance(max_in_row, bool) or not isinstance(max_in_row, int) or max_in_row < 1:
            raise DatafreeError(f"max_nonfinite (skipped steps in a row before the run stops) must be an int >= 1, "
                                f"got {max_in_row!r}.")
        self.device, self.terms, self.max_in_row, self.what = device, tuple(terms), max_in_row, what
        self.shared = bool(shared)  # the flag is the ranks' largest: the model it guards is replicated
        zeros = lambda *shape: torch.zeros(*shape, device=device)  # noqa: E731
        self.skipped, self.streak, self.worst = zeros(()), zeros(()), zeros(())
        self.term_bad = zeros(len(self.terms))  # steps with this term non-finite, in all
        self._one = torch.ones((), device=device)

    def step(self, optimizer: torch.optim.Optimizer, loss: torch.Tensor, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """``optimizer.step()`` unless ``loss`` or a gradient is not finite; no host sync either way.

        Returns the device flag: 1.0 when the step was skipped.
        """
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        found = self.flag(loss, grads)
        self.apply(optimizer, found)
        self.count(found, terms)
        return found

    def flag(self, loss: torch.Tensor, grads: list[torch.Tensor]) -> torch.Tensor:
        """1.0 on the device when ``loss`` or any of ``grads`` has a NaN or Inf, else 0.0."""
        found = (~torch.isfinite(loss.detach())).float().reshape(())
        if grads:
            torch._amp_foreach_non_finite_check_and_unscale_(grads, found, self._one)
        if self.shared:
            dist.all_reduce_(found, "max")
        return found

    @staticmethod
    def apply(optimizer: torch.optim.Optimizer, found: torch.Tensor) -> None:
        """One fused optimizer step that the kernel itself skips when ``found`` is 1."""
        if not optimizer.defaults.get("fused"):
            raise TypeError("NonFiniteGuard needs an optimizer built with fused=True (fused_sgd / fused_adam)")
        optimizer.found_inf, optimizer.grad_scale = found, None
        try:
            optimizer.step()
        finally:
            del optimizer.found_inf, optimizer.grad_scale

    def count(self, found: torch.Tensor, terms: dict[str, torch.Tensor]) -> None:
        self.skipped += found
        self.streak.add_(found).mul_(found)  # +1 on a skipped step, back to 0 on a good one
        torch.maximum(self.worst, self.streak, out=self.worst)
        if self.terms:
            values = torch.stack([terms[name].detach().float().reshape(()) for name in self.terms])
            self.term_bad += (~torch.isfinite(values)).float()

    def tensors(self) -> list[torch.Tensor]:
        """What the loop copies to the host with its losses: skipped, longest streak, per-term counts."""
        return [self.skipped, self.worst, *self.term_bad.unbind()]

    def check(self, values: list[float], step: int, last_good: str | None, hint: str,
              synth_terms: dict[str, float] | None = None) -> int:
        """Stop the run after ``max_in_row`` skipped steps in a row; ``values`` are :meth:`tensors` read back.

        Returns the number of skipped steps so far.
        """
        skipped, worst, counts = int(values[0]), int(values[1]), values[2:]
        if worst >= self.max_in_row:
            bad = [f"{name} ({int(c)} steps)" for name, c in zip(self.terms, counts) if c]
            bad += [f"synthesizer term {name}" for name, v in (synth_terms or {}).items() if v != v or abs(v) == float("inf")]
            culprit = ("non-finite loss terms: " + ", ".join(bad)) if bad else "the loss terms were finite but their gradients were not"
            kept = f"The last good checkpoint is {last_good}." if last_good else "No checkpoint had been written yet."
            raise DatafreeError(
                f"{worst} {self.what}s in a row had a non-finite loss or gradient and were skipped, by {self.what} {step} "
                f"({skipped} skipped in all; {culprit}). {kept} {hint}"
            )
        self.worst.zero_()
        return skipped

    def state_dict(self) -> dict:
        return {"skipped": self.skipped, "streak": self.streak, "worst": self.worst, "term_bad": self.term_bad}

    def load_state_dict(self, state: dict) -> None:
        for name, value in state.items():
            getattr(self, name).copy_(value)
