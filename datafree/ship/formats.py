"""The deployable files: ONNX (onnxruntime, TensorRT, ...), TorchScript (LibTorch, PyTorch Mobile) and a
``torch.export`` program (ExecuTorch, AOTInductor). Each is written from the student wrapped in its normalisation
(:class:`~datafree.teachers.network.Normalized`), so every file takes [0, 1] pixels, with a dynamic batch size.

Every writer raises a :class:`~datafree.errors.DatafreeError` of one line when the student cannot be written in its
format, naming the operator and the formats that can carry the student.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from datafree.errors import DatafreeError, first_line
from datafree.ship.runners import DEPLOY_EXTRA, EXPORT_LOGGERS, quiet_loggers


@dataclass(frozen=True)
class Format:
    name: str        # the recipe's name for it (formats=[...])
    file: str        # the file written
    engine: str      # what runs it (datafree.ship.runners.load_runner)
    write: Callable[[nn.Module, torch.Tensor, Path, int], dict]  # (student, example, path, opset) -> facts for the JSON


def _batch_dim():
    # Exported with an example batch of 2 so that the size is not specialised; any batch size runs. A tuple (by
    # position), since the forward's argument may have any name.
    return ({0: torch.export.Dim("batch", min=1, max=65536)},)


def _refusal(exporter: str, error: BaseException, instead: str) -> DatafreeError:
    """The one line for an exporter's failure: the operator it names (else its first line) and what to do instead."""
    operator = _operator_in(error)
    what = f"the operator {operator}" if operator else f"the student ({first_line(error, 160)})"
    return DatafreeError(f"{exporter} refuses {what}: {instead}")


def _operator_in(error: BaseException) -> str | None:
    """The operator an exporter names in its error (``aten::foo``, ``mylib.op``, ``<OpOverload(op='x.y')>``)."""
    text = str(error)
    for pattern in (r"op='([\w.:]+)'", r"No ONNX function found for <?([\w.:]+)", r"(aten::\w+)",
                    r"Unsupported (?:FX|ATen) nodes?: \{?'?([\w.:]+)", r"operator ([\w.:]+)"):
        found = re.search(pattern, text)
        if found:
            return found.group(1)
    return None


def write_onnx(student: nn.Module, example: torch.Tensor, path: Path, opset: int) -> dict:
    """ONNX through the ``torch.export``-based exporter (the current one; it needs onnx and onnxscript)."""
    try:
        import onnx  # noqa: F401 - the exporter needs both; say so before it does
        import onnxscript  # noqa: F401
    except ImportError:
        raise DatafreeError(f"ONNX export needs onnx and onnxscript: {DEPLOY_EXTRA}, or leave onnx out "
                            "(formats=[torchscript,export]).") from None
    try:
        with warnings.catch_warnings(), quiet_loggers(*EXPORT_LOGGERS):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(student, (example,), dynamo=True, input_names=["images"],
                                        output_names=["logits"], dynamic_shapes=_batch_dim(), opset_version=opset,
                                        external_data=False, verbose=False)
        program.save(str(path))
    except Exception as error:  # noqa: BLE001 - the exporter's own errors are many; each becomes one line
        raise _refusal("ONNX export", error, "write the student as formats=[torchscript,export] instead (they carry "
                       "any PyTorch operator), or replace that layer with standard ones.") from None
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    written = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), opset)
    return {"opset": int(written)}


def write_torchscript(student: nn.Module, example: torch.Tensor, path: Path, opset: int) -> dict:
    """TorchScript by tracing (scripting refuses most networks' Python); ``torch.jit`` is deprecated in recent
    PyTorch releases but still what LibTorch and PyTorch Mobile load."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the deprecation notice and the tracer's notes on Python values
            traced = torch.jit.trace(student, example, check_trace=False)
            torch.jit.save(traced, str(path))
    except Exception as error:  # noqa: BLE001
        raise _refusal("TorchScript tracing", error, "write the student as formats=[onnx,export] instead.") from None
    return {}


def write_export(student: nn.Module, example: torch.Tensor, path: Path, opset: int) -> dict:
    """A ``torch.export`` program (``torch.export.load(path).module()`` runs it), saved as a .pt2 archive."""
    try:
        with quiet_loggers(*EXPORT_LOGGERS):
            program = torch.export.export(student, (example,), dynamic_shapes=_batch_dim())
        torch.export.save(program, str(path))
    except Exception as error:  # noqa: BLE001
        raise _refusal("torch.export", error, "write the student as formats=[torchscript] instead (tracing records "
                       "whatever ran).") from None
    return {}


FORMATS: dict[str, Format] = {
    "onnx": Format("onnx", "student.onnx", "onnxruntime", write_onnx),
    "torchscript": Format("torchscript", "student.ts", "torchscript", write_torchscript),
    "export": Format("export", "student.pt2", "torch.export", write_export),
}


def check_formats(names) -> list[Format]:
    """The formats a recipe names, in its order, or one line naming the unknown one."""
    if isinstance(names, str):
        names = [names]
    chosen = []
    for name in names or []:
        if name not in FORMATS:
            raise DatafreeError(f"unknown format {name!r}: choose from {', '.join(FORMATS)} "
                                "(e.g. formats=[onnx,torchscript,export]).")
        if FORMATS[name] not in chosen:
            chosen.append(FORMATS[name])
    if not chosen:
        raise DatafreeError("formats is empty: name at least one of onnx, torchscript, export.")
    return chosen


def example_input(input_size: tuple[int, int, int]) -> torch.Tensor:
    """The tracing example: two images (a batch of 1 would be specialised as a constant by the exporters)."""
    return torch.rand(2, *input_size, generator=torch.Generator().manual_seed(0))
