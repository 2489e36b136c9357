"""Replay a fixed-shape training step as one CUDA graph: one launch instead of hundreds.

A data-free step on 32x32 images is launch-bound in eager PyTorch: a ResNet step issues a
few hundred small kernels, and the host takes longer to launch them than the GPU takes to
run them. :class:`CapturedStep` runs the step eagerly a few times (on a side stream, so that
cuDNN's algorithm search and the optimizers' lazy state happen outside the graph), captures
the next call into a :class:`torch.cuda.CUDAGraph`, and from then on replays it.

Every warm-up and every capture on a device runs on one side stream (:func:`side_stream`). Autograd
tags a parameter's gradient accumulator with the stream it was made on and keeps it while anything
holds the step's graph; a new stream per call, or a capture on another stream than the warm-up's,
makes the next backward wait across streams (PyTorch warns that an AccumulateGrad node's stream does
not match its producer's, and a capture that pulls in a non-capturing stream fails).

A captured step must: read its inputs from tensors that stay in place (fill them with
``copy_``/``fill_`` between replays), draw its random numbers on the device, never read a
device value on the host, and keep its shapes. What it returns is overwritten by the next
replay. Learning rates that change must be tensors (see :func:`tensor_lr`).
"""
from __future__ import annotations

from typing import Any, Callable

import torch

_side_streams: dict[torch.device, torch.cuda.Stream] = {}


def side_stream(device: torch.device) -> torch.cuda.Stream:
    """The one stream every :class:`CapturedStep` on ``device`` warms up and captures on."""
    device = torch.device(device)
    if device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    if device not in _side_streams:
        _side_streams[device] = torch.cuda.Stream(device)
    return _side_streams[device]


class CapturedStep:
    """``step()`` eagerly on the CPU or when disabled; on CUDA eager for ``warmup`` calls, then replayed."""

    def __init__(self, fn: Callable[[], Any], device: torch.device, enabled: bool = True, warmup: int = 3):
        self.fn, self.device = fn, torch.device(device)
        self.enabled = bool(enabled) and self.device.type == "cuda"
        self.warmup = int(warmup)
        self.calls = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.output: Any = None

    def __call__(self) -> Any:
        self.calls += 1
        if not self.enabled:
            return self.fn()
        side = side_stream(self.device)
        if self.graph is None and self.calls <= self.warmup:
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                output = self.fn()
            torch.cuda.current_stream(self.device).wait_stream(side)
            return output
        if self.graph is None:
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph, stream=side):
                self.output = self.fn()
        self.graph.replay()
        return self.output

    def reset(self) -> None:
        """Forget the graph (e.g. after the step's tensors were replaced): the next calls warm up and capture anew."""
        self.graph, self.output, self.calls = None, None, 0


def tensor_lr(optimizer: torch.optim.Optimizer) -> None:
    """Make every group's learning rate a device tensor, so that a captured ``step()`` reads the current value."""
    for group in optimizer.param_groups:
        if not isinstance(group["lr"], torch.Tensor):
            device = group["params"][0].device
            group["lr"] = torch.tensor(float(group["lr"]), device=device)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's learning rate, in place where it is a tensor (no host sync: the value is a kernel argument)."""
    for group in optimizer.param_groups:
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr
