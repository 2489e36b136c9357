"""Data-free int8: post-training static quantisation of the student's ONNX file with onnxruntime, its activation
ranges calibrated on synthetic images only.

Why onnxruntime's quantiser: it is maintained, runs on any CPU, and the int8 file it writes (QDQ format: int8
weights, QuantizeLinear/DequantizeLinear around each quantised operator) is run by onnxruntime's int8 kernels on
x86 and ARM alike, with the same file on every machine. PyTorch's own PT2E path moved out of ``torch.ao`` into
torchao (torch 2.14 ships no ``quantize_pt2e``), and its int8 graph runs fast only after ``torch.compile`` with
the x86 Inductor backend, which a 2-core CPU box or a phone does not have.
"""
from __future__ import annotations

import re
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch

from datafree.errors import DatafreeError, first_line
from datafree.ship.runners import DEPLOY_EXTRA, EXPORT_LOGGERS, quiet_loggers

# The operators that neither carry weights nor need int8: they stay float without loss worth naming.
_PLUMBING = {"QuantizeLinear", "DequantizeLinear", "Constant", "Identity", "Shape", "Cast"}
_NORMS = ("BatchNormalization", "InstanceNormalization", "LayerNormalization")


@dataclass
class Int8File:
    path: Path
    calibration_images: int
    kept_float: dict[str, int]  # operator type -> how many run in float (the quantiser has no int8 form for them)


def _require_quantiser():
    try:
        from onnxruntime import quantization
    except ImportError:
        raise DatafreeError(f"int8 quantisation needs onnxruntime: {DEPLOY_EXTRA}.") from None
    return quantization


def _batches(images: torch.Tensor, input_name: str, batch: int) -> Iterator[dict]:
    for start in range(0, len(images), batch):
        yield {input_name: images[start:start + batch].float().contiguous().numpy()}


def quantise(float_onnx: Path, out: Path, calibration: torch.Tensor, keep_float: tuple[str, ...] = (),
             per_channel: bool = True, batch: int = 64) -> Int8File:
    """Write ``out``, the int8 form of ``float_onnx`` with activation ranges from ``calibration`` (float images in
    [0, 1]; min-max ranges). Operators the quantiser has no int8 form for, and the operator types in
    ``keep_float``, stay in float (named in the result); a model it cannot quantise at all is one error line."""
    quantization = _require_quantiser()
    import onnx

    registry = set(quantization.registry.QDQRegistry)
    unknown = [op for op in keep_float if op not in registry]
    if unknown:
        raise DatafreeError(f"int8_keep_float names {unknown}, which the quantiser does not quantise anyway: name "
                            f"operator types among {', '.join(sorted(registry))}.")
    if len(calibration) == 0:
        raise DatafreeError("int8 calibration got no images: give synthetic=DIR or run=RUN_DIR with synthetic images.")
    input_name = onnx.load(str(float_onnx), load_external_data=False).graph.input[0].name

    class Reader(quantization.CalibrationDataReader):
        def __init__(self):
            self.batches = _batches(calibration, input_name, batch)

        def get_next(self):
            return next(self.batches, None)

    with tempfile.TemporaryDirectory(dir=out.parent) as scratch, quiet_loggers(*EXPORT_LOGGERS):
        prepared = Path(scratch) / "prepared.onnx"
        try:
            # Shape inference and graph optimisation first, as onnxruntime's documentation asks before quantising.
            quantization.shape_inference.quant_pre_process(str(float_onnx), str(prepared))
            ops = Counter(node.op_type for node in onnx.load(str(prepared)).graph.node)
            quantised = sorted((registry - set(keep_float)) & set(ops))
            quantization.quantize_static(
                str(prepared), str(out), Reader(), quant_format=quantization.QuantFormat.QDQ,
                op_types_to_quantize=quantised, per_channel=per_channel,
                activation_type=quantization.QuantType.QUInt8, weight_type=quantization.QuantType.QInt8,
                calibrate_method=quantization.CalibrationMethod.MinMax,
                calibration_providers=["CPUExecutionProvider"],
                # A normalisation layer's scale is one value per channel, a 1-D tensor: its channels are axis 0.
                # The quantiser's default (axis 1, a convolution's layout) is out of range there, so it warned for
                # every BatchNorm that could not be folded (a WRN's pre-activation ones) and fell back to one
                # scale for all channels.
                extra_options={"QDQOpTypePerChannelSupportToAxis": dict.fromkeys(_NORMS, 0)},
            )
        except DatafreeError:
            raise
        except Exception as error:  # noqa: BLE001 - the quantiser's errors name the node it failed on
            node = re.search(r"[Nn]ode[^\w]+([\w/.:-]+)", str(error))
            where = f" at node {node.group(1)}" if node else ""
            raise DatafreeError(f"onnxruntime's quantiser cannot quantise the student{where} ({first_line(error, 160)}): "
                                "keep that operator type in float with int8_keep_float=[TYPE], or ship the float "
                                "files (int8=false).") from None
    kept = {op: count for op, count in sorted(ops.items()) if op not in quantised and op not in _PLUMBING}
    return Int8File(path=out, calibration_images=len(calibration), kept_float=kept)
