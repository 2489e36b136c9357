"""``datafree deploy``: the student as deployable files, each checked against the PyTorch student before it is
kept, optionally an int8 file calibrated on synthetic images only, and ``deploy.json`` describing them.

Everything is written to a staging folder first and moved into place only once every file has passed its check:
a refused file leaves the output folder as it was. ``deploy.json`` is moved last; a file it does not list was not
written by this run.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from datafree.data.dataset import ImageDataset
from datafree.errors import DatafreeError
from datafree.ops.pixels import dequantise
from datafree.ship.formats import check_formats, example_input
from datafree.ship.parity import Tolerance, compare, require_within
from datafree.ship.quantise import Quantiser
from datafree.ship.runners import Runner, load_runner, logits_of, torch_runner
from datafree.ship.sensitivity import keep_sensitive_layers_in_float
from datafree.ship.timing import cpu_latency, cpu_name
from datafree.teachers import ClassifierInfo
from datafree.utils.checkpoint import atomic_write
from datafree.version import __version__

INT8_FILE = "student.int8.onnx"
MANIFEST = "deploy.json"


@dataclass
class DeploySettings:
    """The deploy recipe's keys (``recipes/deploy.yaml`` documents each)."""

    formats: list[str] = field(default_factory=lambda: ["onnx", "torchscript", "export"])
    opset: int = 20
    check_images: int = 256
    max_logit_diff: float = 1e-3
    min_agreement: float = 0.99
    int8: bool = False
    calibration_images: int = 512
    int8_min_agreement: float = 0.9
    int8_target_agreement: float = 0.98
    int8_keep_float: list[str] = field(default_factory=list)
    int8_float_layers: int = 8
    compare_real_calibration: bool = True
    eval_images: int = 10000
    latency: bool = True
    threads: int = 1


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_images(synthetic: torch.Tensor, real: ImageDataset | None, info: ClassifierInfo,
                  n: int) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The images every file is checked on: synthetic ones (uniform noise when there are none), and real ones."""
    notes = []
    if len(synthetic):
        images = {"synthetic": dequantise(synthetic[:n])}
    else:
        notes.append(f"no synthetic images (give run=RUN_DIR or synthetic=DIR): the files are checked on {n} images "
                     "of uniform noise")
        images = {"noise": torch.rand(n, *info.input_size, generator=torch.Generator().manual_seed(0))}
    if real is not None:
        images["real"] = dequantise(real.images[:n])
    return images, notes


def _accuracy(runner: Runner, test: ImageDataset, limit: int) -> tuple[float, torch.Tensor]:
    logits = logits_of(runner, test.images[:limit])
    return float((logits.argmax(1) == test.labels[:limit]).float().mean()), logits


def _int8(float_onnx: Path, stage: Path, reference: Runner, check: dict[str, torch.Tensor], synthetic: torch.Tensor,
          real_train: ImageDataset | None, real_test: ImageDataset | None, settings: DeploySettings,
          log: Callable[[str], None]) -> dict:
    """The int8 file calibrated on synthetic images, checked against the float student, and what it costs and
    saves; with real training images, the same quantisation calibrated on as many real ones, for comparison."""
    calibration = dequantise(synthetic[: settings.calibration_images])
    started = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(dir=stage))  # inside the staging folder: removed with it, whatever happens
    quantiser = Quantiser(float_onnx, calibration, scratch, tuple(settings.int8_keep_float))
    made = quantiser.write(stage / INT8_FILE)
    seconds = time.perf_counter() - started
    runner = load_runner("student int8", made.path, "onnxruntime", settings.threads)
    search, tried = None, ""
    if settings.int8_float_layers > 0 and len(quantiser.layers) > 1:
        # The search decides on the synthetic check images alone; the real ones only take part in the check below.
        first = compare(reference, runner, {"synthetic": check["synthetic"]}).agreement
        if first < settings.int8_target_agreement:
            log(f"int8: top-1 agreement with float {100 * first:.2f}% on the synthetic check images, below "
                f"int8_target_agreement ({100 * settings.int8_target_agreement:g}%): looking for the layers int8 "
                "hurts most")
            made, search = keep_sensitive_layers_in_float(
                quantiser, stage / INT8_FILE, reference, check["synthetic"], first, settings.int8_target_agreement,
                settings.int8_float_layers, settings.threads, log)
            runner = load_runner("student int8", made.path, "onnxruntime", settings.threads)
            kept = ", ".join(made.float_layers) or "none helped"
            tried = (f", with up to {settings.int8_float_layers} of its most sensitive weight layers tried in float "
                     f"({kept} kept; int8_float_layers allows more),")
    parity = compare(reference, runner, check)
    require_within(parity, Tolerance(None, settings.int8_min_agreement), f"the int8 file {INT8_FILE}{tried}",
                   ("", "int8_min_agreement"))
    section = {"file": INT8_FILE, "engine": "onnxruntime", "method": "static, QDQ, per-channel int8 weights, uint8 "
               "activations with min-max ranges", "calibration": {"images": made.calibration_images,
               "source": "synthetic only"}, "kept_float": made.kept_float, "float_layers": made.float_layers,
               "parity": parity.as_dict(), "quantise_s": round(seconds, 2),
               "bytes": {"float_onnx": float_onnx.stat().st_size, "int8_onnx": made.path.stat().st_size}}
    if search is not None:
        section["sensitivity_search"] = search.as_dict(quantiser.layers)
    if made.kept_float:
        log("int8: kept in float (no int8 form in onnxruntime's quantiser"
            f"{' or int8_keep_float' if settings.int8_keep_float else ''}): "
            + ", ".join(f"{op} x{count}" for op, count in made.kept_float.items()))
    float_nodes = tuple(search.kept) if search else ()
    float_onnx_runner = load_runner("student onnx", float_onnx, "onnxruntime", settings.threads)
    if real_test is not None:
        limit = settings.eval_images
        float_acc, float_logits = _accuracy(reference, real_test, limit)
        int8_acc, int8_logits = _accuracy(runner, real_test, limit)
        section["accuracy"] = {"test_images": min(limit, len(real_test)), "float": float_acc, "int8": int8_acc,
                               "int8_agreement_with_float": float((int8_logits.argmax(1) == float_logits.argmax(1))
                                                                  .float().mean())}
        if settings.compare_real_calibration and real_train is not None:
            real_images = dequantise(real_train.sample(len(calibration), seed=0).images)
            with tempfile.TemporaryDirectory(dir=stage) as scratch:
                # The same quantisation, the same layers in float: only the calibration images differ.
                control = Quantiser(float_onnx, real_images, Path(scratch), tuple(settings.int8_keep_float)).write(
                    Path(scratch) / "real.int8.onnx", float_nodes)
                real_acc, _ = _accuracy(load_runner("student int8 (real calibration)", control.path, "onnxruntime",
                                                    settings.threads), real_test, limit)
            section["calibration_comparison"] = {"images": len(real_images), "synthetic_calibrated": int8_acc,
                                                 "real_calibrated": real_acc, "float": float_acc}
        elif settings.compare_real_calibration:
            section["calibration_comparison"] = None
            section["calibration_comparison_skipped"] = "no real training images (data.train)"
    else:
        section["accuracy"] = None
        section["accuracy_skipped"] = "no test images: give data=... with a test split"
    if settings.latency:
        image_size = tuple(next(iter(check.values())).shape[1:])
        section["latency_cpu"] = cpu_name()
        section["latency_ms_batch1"] = {
            "pytorch_float": cpu_latency(reference, image_size, settings.threads).as_dict(),
            "onnxruntime_float": cpu_latency(float_onnx_runner, image_size, settings.threads).as_dict(),
            "onnxruntime_int8": cpu_latency(runner, image_size, settings.threads).as_dict(),
        }
    return section


def deploy_student(model: nn.Module, info: ClassifierInfo, out_dir: str | os.PathLike, *,
                   synthetic: torch.Tensor | None = None, real_test: ImageDataset | None = None,
                   real_train: ImageDataset | None = None, settings: DeploySettings | None = None,
                   source: dict | None = None, log: Callable[[str], None] = print) -> dict:
    """Write ``model`` (a frozen classifier taking [0, 1] pixels, e.g. a loaded student) into ``out_dir`` in
    ``settings.formats``, each file checked against ``model`` on synthetic (uint8 ``synthetic``) and real images;
    with ``settings.int8`` also ``student.int8.onnx``. Returns what ``deploy.json`` holds."""
    settings = settings or DeploySettings()
    formats = check_formats(settings.formats)
    if settings.int8 and "onnx" not in [f.name for f in formats]:
        raise DatafreeError("int8=true quantises the ONNX file: add onnx to formats (e.g. formats=[onnx,export]).")
    model = model.cpu().eval()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    synthetic = synthetic if synthetic is not None else torch.empty(0, *info.input_size, dtype=torch.uint8)
    if settings.int8 and not len(synthetic):  # before any file is made: the cheaper refusal first
        raise DatafreeError("int8=true calibrates on synthetic images and there are none: give synthetic=DIR (a set "
                            "from datafree synthesize) or run=RUN_DIR (its replay pool or synthesizer).")
    check, notes = _check_images(synthetic, real_test, info, settings.check_images)
    for note in notes:
        log(f"note: {note}")
    reference = torch_runner("student", model)
    tolerance = Tolerance(settings.max_logit_diff, settings.min_agreement)
    files: dict[str, dict] = {}
    stage = Path(tempfile.mkdtemp(prefix=".deploy-", dir=out_dir))
    try:
        example = example_input(info.input_size)
        for fmt in formats:
            path = stage / fmt.file
            facts = fmt.write(model, example, path, settings.opset)
            runner = load_runner(f"student {fmt.name}", path, fmt.engine, settings.threads)
            parity = compare(reference, runner, check)
            require_within(parity, tolerance, f"the {fmt.name} file {fmt.file}", ("max_logit_diff", "min_agreement"))
            files[fmt.file] = {"format": fmt.name, "engine": fmt.engine, **facts, "parity": parity.as_dict()}
            log(f"{fmt.file}: largest logit difference {parity.max_logit_diff:.2e}, top-1 agreement "
                f"{100 * parity.agreement:.2f}% on {' + '.join(f'{n} {k}' for k, n in parity.images.items())} images")
        int8 = None
        if settings.int8:
            int8 = _int8(stage / "student.onnx", stage, reference, check, synthetic, real_train, real_test, settings, log)
            files[INT8_FILE] = {"format": "onnx-int8", "engine": "onnxruntime", "parity": int8["parity"]}
        for name, entry in files.items():
            entry["bytes"] = (stage / name).stat().st_size
            entry["sha256"] = sha256_of(stage / name)
        manifest = describe(info, files, int8, check, source, settings)
        atomic_write(stage / MANIFEST, lambda handle: handle.write(json.dumps(manifest, indent=2).encode()))
        for name in [*files, MANIFEST]:  # the manifest last: what it lists is complete
            os.replace(stage / name, out_dir / name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return manifest


def describe(info: ClassifierInfo, files: dict, int8: dict | None, check: dict[str, torch.Tensor],
             source: dict | None, settings: DeploySettings) -> dict:
    """What ``deploy.json`` says: how to feed the files, what they are, and how each was checked."""
    import importlib.metadata as metadata

    def version(package: str) -> str | None:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return None

    classes = list(info.classes) or [f"class_{i}" for i in range(info.num_classes)]
    return {
        "datafree_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": {"torch": torch.__version__, "onnx": version("onnx"), "onnxruntime": version("onnxruntime"),
                     "python": platform.python_version()},
        "student": {"arch": info.arch, "num_classes": info.num_classes, "classes": classes,
                    "test_accuracy": info.test_accuracy, **(source or {})},
        "input": {"name": "images", "shape": ["batch", *info.input_size], "dtype": "float32", "layout": "NCHW",
                  "value_range": [0.0, 1.0],
                  "normalisation": "built into every file: (images - mean) / std with the values below",
                  "mean": list(info.mean), "std": list(info.std)},
        "output": {"name": "logits", "shape": ["batch", info.num_classes]},
        "checked_on": {kind: len(images) for kind, images in check.items()},
        "tolerance": {"max_logit_diff": settings.max_logit_diff, "min_agreement": settings.min_agreement,
                      "int8_min_agreement": settings.int8_min_agreement if int8 is not None else None},
        "files": files,
        "int8": int8,
    }
