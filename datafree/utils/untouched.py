"""Probe a network and leave no trace: what a check's forward (or backward) pass changes is put back afterwards."""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn


@contextlib.contextmanager
def untouched(module: nn.Module, device: torch.device | str) -> Iterator[None]:
    """Inside, run what a check needs through ``module``; afterwards its buffers (BatchNorm running statistics and
    counts), its gradients, each submodule's train/eval mode and the random streams (which a dropout draws from) are
    as they were, so that a run with the check is bitwise the run without it."""
    device = torch.device(device)
    buffers = [(b, b.detach().clone()) for b in module.buffers()]
    # Each gradient as it was, in its own tensor (a backward accumulates into it in place; a captured step may
    # hold that tensor), with a copy of its values.
    grads = [(p, p.grad, None if p.grad is None else p.grad.detach().clone()) for p in module.parameters()]
    modes = [(m, m.training) for m in module.modules()]
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        try:
            yield
        finally:
            with torch.no_grad():
                for buffer, saved in buffers:
                    buffer.copy_(saved)
                for param, grad, values in grads:
                    if grad is not None:
                        grad.copy_(values)
                    param.grad = grad
            for sub, training in modes:
                sub.training = training
