"""A network as the engine that runs it: PyTorch (a module, a TorchScript archive, a ``torch.export`` program) or
onnxruntime (an ONNX file). Each takes float images in [0, 1] and gives float32 logits on the CPU, so that parity,
latency and accuracy are measured the same way whatever the engine."""
from __future__ import annotations

import contextlib
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from datafree.errors import DatafreeError

DEPLOY_EXTRA = 'pip install "datafree[deploy]"'


@dataclass
class Runner:
    """One network and its engine. ``module`` is the PyTorch module where there is one (None for onnxruntime)."""

    name: str
    engine: str  # "pytorch" | "torchscript" | "torch.export" | "onnxruntime"
    file: Path | None = None
    module: nn.Module | None = None
    session: object | None = None  # an onnxruntime.InferenceSession
    device: torch.device = torch.device("cpu")

    @torch.no_grad()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """float32 logits on the CPU for float images in [0, 1] (any device)."""
        if self.session is not None:
            array = images.detach().float().cpu().contiguous().numpy()
            return torch.from_numpy(self.session.run(None, {self.session.get_inputs()[0].name: array})[0]).float()
        return self.module(images.to(_placement(self.module, self.device), torch.float32)).float().cpu()

    def call(self, images: torch.Tensor):
        """One forward pass with nothing converted afterwards: what a latency measurement times."""
        if self.session is not None:
            return self.session.run(None, {self.session.get_inputs()[0].name: images.numpy()})
        with torch.inference_mode():
            return self.module(images)

    def to(self, device: torch.device) -> "Runner":
        """The same network on ``device`` (PyTorch modules only; onnxruntime stays on the CPU here).

        The module is moved whatever ``self.device`` says: ``nn.Module.to`` moves it in place, so another runner
        sharing it (the CPU latency's, say) may have moved it since this runner was made."""
        if self.module is None:
            return self
        return Runner(self.name, self.engine, self.file, self.module.to(device), None, torch.device(device))

    @property
    def on_cpu_only(self) -> bool:
        return self.session is not None


def _placement(module: nn.Module, default: torch.device) -> torch.device:
    """Where ``module`` is now (its first parameter or buffer), which may no longer be where it was put."""
    tensor = next(module.parameters(), None)
    tensor = tensor if tensor is not None else next(module.buffers(), None)
    return default if tensor is None else tensor.device


@contextlib.contextmanager
def quiet_loggers(*names: str):
    """The exporters' and the quantiser's INFO lines (graph passes, shape inference) silenced inside; their
    warnings and errors still pass."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(max(logger.level, logging.WARNING))
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


EXPORT_LOGGERS = ("onnxscript", "onnx_ir", "torch.onnx", "torch.export", "torch._export", "onnxruntime")


def torch_runner(name: str, module: nn.Module, device: torch.device = torch.device("cpu"), file=None) -> Runner:
    return Runner(name, "pytorch", None if file is None else Path(file), module.eval().to(device), None, device)


def require_onnxruntime():
    """The onnxruntime module, or one line saying how to install it."""
    try:
        import onnxruntime
    except ImportError:
        raise DatafreeError(f"running an ONNX file needs onnxruntime: {DEPLOY_EXTRA}.") from None
    return onnxruntime


def onnx_session(path: str | os.PathLike, threads: int):
    """An onnxruntime CPU session on ``threads`` intra-op threads (the count PyTorch is given, for a fair comparison)."""
    ort = require_onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # warnings about unused initialisers are not the user's business
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def load_runner(name: str, path: Path, engine: str, threads: int) -> Runner:
    """A written file, loaded back by the engine that runs it where it is deployed."""
    if engine == "onnxruntime":
        return Runner(name, engine, Path(path), session=onnx_session(path, threads))
    if engine == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice: the file is the point
            module = torch.jit.load(str(path), map_location="cpu").eval()
        return Runner(name, engine, Path(path), module=module)
    if engine == "torch.export":
        return Runner(name, engine, Path(path), module=torch.export.load(str(path)).module())
    raise ValueError(f"unknown engine {engine!r}")


def logits_of(runner: Runner, images: torch.Tensor, batch: int = 500) -> torch.Tensor:
    """``runner``'s float32 CPU logits for uint8 (stored) or float images, ``batch`` images at a time."""
    parts = []
    for start in range(0, len(images), batch):
        part = images[start:start + batch].to(runner.device)
        parts.append(runner.logits(part.float().div_(255) if part.dtype == torch.uint8 else part))
    return torch.cat(parts) if parts else torch.empty(0)
