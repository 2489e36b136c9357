"""Data-free int8: post-training static quantisation of the student's ONNX file with onnxruntime, its activation
ranges calibrated on synthetic images only.

Why onnxruntime's quantiser: it is maintained, runs on any CPU, and the int8 file it writes (QDQ format: int8
weights, QuantizeLinear/DequantizeLinear around each quantised operator) is run by onnxruntime's int8 kernels on
x86 and ARM alike, with the same file on every machine. PyTorch's own PT2E path moved out of ``torch.ao`` into
torchao (torch 2.14 ships no ``quantize_pt2e``), and its int8 graph runs fast only after ``torch.compile`` with
the x86 Inductor backend, which a 2-core CPU box or a phone does not have.
"""
from __future__ import annotations

import inspect
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch

from datafree.errors import DatafreeError, first_line
from datafree.ship.runners import DEPLOY_EXTRA, EXPORT_LOGGERS, quiet_loggers

# The operators that neither carry weights nor need int8: they stay float without loss worth naming.
_PLUMBING = {"QuantizeLinear", "DequantizeLinear", "Constant", "Identity", "Shape", "Cast"}
_NORMS = ("BatchNormalization", "InstanceNormalization", "LayerNormalization")
_WEIGHTED = {"Conv", "ConvTranspose", "Gemm", "MatMul"}  # the layers a sensitivity search weighs


@dataclass
class Int8File:
    path: Path
    calibration_images: int
    kept_float: dict[str, int]  # operator type -> how many run in float (the quantiser has no int8 form for them)
    float_layers: list[str] = field(default_factory=list)  # weight layers kept in float by name (sensitive ones)


def _require_quantiser():
    try:
        from onnxruntime import quantization
    except ImportError:
        raise DatafreeError(f"int8 quantisation needs onnxruntime: {DEPLOY_EXTRA}.") from None
    return quantization


def _batches(images: torch.Tensor, input_name: str, batch: int) -> Iterator[dict]:
    for start in range(0, len(images), batch):
        yield {input_name: images[start:start + batch].float().contiguous().numpy()}


def _layer_name(node) -> str:
    """The PyTorch module a weight layer came from: torch's ONNX exporter names a weight after its module
    (``model.features.1.block.0.0.weight``, a BatchNorm folded into it or not); else the node's own name."""
    weight = node.input[1] if len(node.input) > 1 else ""
    return weight.removesuffix(".weight").removeprefix("model.") if weight.endswith(".weight") else node.name


class Quantiser:
    """The int8 forms of one float ONNX file: prepared (shape inference, graph optimisation) and calibrated once, on
    ``calibration`` (float images in [0, 1]; min-max ranges), then written as often as asked with different layers
    kept in float. Operators the quantiser has no int8 form for, and the operator types in ``keep_float``, stay in
    float (named in each result); a model it cannot quantise at all is one error line."""

    def __init__(self, float_onnx: Path, calibration: torch.Tensor, scratch: Path, keep_float: tuple[str, ...] = (),
                 per_channel: bool = True, batch: int = 64):
        self.quantization = _require_quantiser()
        import onnx

        registry = set(self.quantization.registry.QDQRegistry)
        unknown = [op for op in keep_float if op not in registry]
        if unknown:
            raise DatafreeError(f"int8_keep_float names {unknown}, which the quantiser does not quantise anyway: name "
                                f"operator types among {', '.join(sorted(registry))}.")
        if len(calibration) == 0:
            raise DatafreeError("int8 calibration got no images: give synthetic=DIR or run=RUN_DIR with synthetic "
                                "images.")
        self.calibration, self.per_channel, self.batch = calibration, per_channel, batch
        original = onnx.load(str(float_onnx), load_external_data=False).graph
        self.input_name = original.input[0].name
        modules = {node.name: _layer_name(node) for node in original.node}  # pre-processing drops the scopes
        self.scratch = Path(scratch)
        self.prepared = self.scratch / "prepared.onnx"
        with quiet_loggers(*EXPORT_LOGGERS):
            # Shape inference and graph optimisation first, as onnxruntime's documentation asks before quantising.
            self.quantization.shape_inference.quant_pre_process(str(float_onnx), str(self.prepared))
        graph = onnx.load(str(self.prepared)).graph
        self.ops = Counter(node.op_type for node in graph.node)
        self.quantised = sorted((registry - set(keep_float)) & set(self.ops))
        # The layers with weights, in graph order, by name: those a sensitivity search may keep in float.
        self.layers = {node.name: modules.get(node.name, node.name) for node in graph.node
                       if node.op_type in _WEIGHTED and node.op_type in self.quantised}
        # Calibrate once: onnxruntime (1.26 and later) reads the activation ranges back from a cache file, so a
        # second int8 form with other layers in float costs a quantisation, not another pass over the images.
        parameters = inspect.signature(self.quantization.quantize_static).parameters
        self.cache = self.scratch / "ranges.json" if "calibration_cache_path" in parameters else None

    def write(self, out: Path, float_layers: tuple[str, ...] = ()) -> Int8File:
        """``out``: the int8 file, the node names in ``float_layers`` (keys of :attr:`layers`) kept in float."""
        quantization, calibration, name, batch = self.quantization, self.calibration, self.input_name, self.batch

        class Reader(quantization.CalibrationDataReader):
            def __init__(self):
                self.batches = _batches(calibration, name, batch)

            def get_next(self):
                return next(self.batches, None)

        cache = {} if self.cache is None else {"calibration_cache_path": str(self.cache)}
        with quiet_loggers(*EXPORT_LOGGERS):
            try:
                quantization.quantize_static(
                    str(self.prepared), str(out), Reader(), quant_format=quantization.QuantFormat.QDQ,
                    op_types_to_quantize=self.quantised, per_channel=self.per_channel,
                    nodes_to_exclude=list(float_layers),
                    activation_type=quantization.QuantType.QUInt8, weight_type=quantization.QuantType.QInt8,
                    calibrate_method=quantization.CalibrationMethod.MinMax,
                    calibration_providers=["CPUExecutionProvider"],
                    # A normalisation layer's scale is one value per channel, a 1-D tensor: its channels are axis 0.
                    # The quantiser's default (axis 1, a convolution's layout) is out of range there, so it warned
                    # for every BatchNorm that could not be folded (a WRN's pre-activation ones) and fell back to
                    # one scale for all channels.
                    extra_options={"QDQOpTypePerChannelSupportToAxis": dict.fromkeys(_NORMS, 0)}, **cache,
                )
            except DatafreeError:
                raise
            except Exception as error:  # noqa: BLE001 - the quantiser's errors name the node it failed on
                node = re.search(r"[Nn]ode[^\w]+([\w/.:-]+)", str(error))
                where = f" at node {node.group(1)}" if node else ""
                raise DatafreeError(f"onnxruntime's quantiser cannot quantise the student{where} "
                                    f"({first_line(error, 160)}): keep that operator type in float with "
                                    "int8_keep_float=[TYPE], or ship the float files (int8=false).") from None
        kept = {op: count for op, count in sorted(self.ops.items())
                if op not in self.quantised and op not in _PLUMBING}
        return Int8File(path=out, calibration_images=len(calibration), kept_float=kept,
                        float_layers=[self.layers[n] for n in float_layers])

