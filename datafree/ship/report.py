"""``datafree report``: the teacher and its students (PyTorch, and the ONNX float and int8 files of a deploy
folder) side by side: size, cost, speed, accuracy, agreement, calibration, per-class accuracy, robustness to
common corruptions and the similarity of their features. Written as ``report.json``, ``report.md`` and pictures.

What needs labels (accuracy, calibration, corruptions) is measured on real test images; agreement with the
teacher and feature similarity need images only, so without test images they are measured on synthetic ones,
and the report says what it skipped and why.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from datafree.data.dataset import ImageDataset
from datafree.errors import DatafreeError
from datafree.export.pictures import save_stacked
from datafree.ops.hooks import PenultimateFeatures
from datafree.ship import charts
from datafree.ship.corruptions import LEVELS, SEVERITIES, corrupt
from datafree.ship.metrics import (calibration, linear_cka, multiply_accumulates, parameter_count,
                                   peak_activation_bytes, per_class_accuracy, weight_bytes)
from datafree.ship.runners import Runner, logits_of
from datafree.ship.timing import cpu_latency, cpu_name, gpu_throughput, quick_cpu_latency
from datafree.utils.checkpoint import atomic_write
from datafree.version import __version__


@dataclass
class Entry:
    """One network of the report. ``network`` is the PyTorch module the numbers that need one come from (the
    same network for an ONNX file of the student: its parameters and MACs are the student's)."""

    name: str
    runner: Runner
    network: nn.Module | None = None
    file: Path | None = None
    role: str = "student"  # "teacher" | "student"
    note: str | None = None  # what the report should say of the file (an int8 file's layers kept in float)


@dataclass
class ReportSettings:
    """The report recipe's keys (``recipes/report.yaml`` documents each)."""

    test_images: int = 10000
    corruption_images: int = 2000
    cka_images: int = 2000
    bins: int = 15
    latency: bool = True
    min_run_time: float = 0.5
    gpu_batch: int = 256
    threads: int = 1
    seed: int = 0


@dataclass
class Images:
    """What the report measures on: labelled test images, or unlabelled synthetic ones (uint8 both)."""

    test: ImageDataset | None
    unlabelled: torch.Tensor | None = None
    unlabelled_source: str = ""
    skipped: list[str] = field(default_factory=list)


def _features(network: nn.Module, images: torch.Tensor, device: torch.device, batch: int = 500) -> torch.Tensor | None:
    """The input of the network's last nn.Linear for ``images`` (uint8), or None when it has none."""
    try:
        capture = PenultimateFeatures(network, "linear CKA", "")
    except DatafreeError:
        return None
    parts = []
    with capture, torch.no_grad():
        for start in range(0, len(images), batch):
            network(images[start:start + batch].to(device).float().div_(255))
            parts.append(capture.take().cpu())
    return torch.cat(parts)


def _measure_costs(entry: Entry, input_size: tuple[int, int, int], device: torch.device,
                   settings: ReportSettings) -> dict:
    row: dict = {"file_bytes": entry.file.stat().st_size if entry.file is not None and entry.file.is_file() else None}
    if entry.network is not None:
        network = entry.network.to(device)
        row["parameters"] = parameter_count(network)
        row["macs"] = multiply_accumulates(network, input_size)
        row["weight_bytes"] = weight_bytes(network)
    if not settings.latency:
        return row
    row["cpu_latency_ms_batch1"] = cpu_latency(entry.runner, input_size, settings.threads,
                                               min_run_time=settings.min_run_time).as_dict()
    if device.type == "cuda" and not entry.runner.on_cpu_only:
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        timing, per_s = gpu_throughput(entry.runner, input_size, settings.gpu_batch, device,
                                       min_run_time=settings.min_run_time)
        row["gpu_throughput"] = {"batch": settings.gpu_batch, "images_per_s": per_s, **timing.as_dict()}
        row["peak_memory_bytes"] = {"where": f"GPU, batch {settings.gpu_batch} (allocator peak above the weights)",
                                    "bytes": int(torch.cuda.max_memory_allocated(device) - before)}
    elif entry.network is not None and not entry.runner.on_cpu_only:
        cpu_net = entry.network.cpu()
        activations = peak_activation_bytes(cpu_net, torch.rand(1, *input_size))
        row["peak_memory_bytes"] = {"where": "CPU, batch 1 (weights + the largest set of live activations)",
                                    "bytes": int(weight_bytes(cpu_net) + activations)}
    else:
        row["peak_memory_bytes"] = None  # onnxruntime does not report what its arena holds
    return row


def _labelled_metrics(logits: torch.Tensor, test: ImageDataset, limit: int, bins: int, num_classes: int) -> dict:
    labels = test.labels[:limit]
    predicted = logits.argmax(1)
    cal = calibration(logits, labels, bins)
    return {"accuracy": float((predicted == labels).float().mean()), "ece": cal.ece, "reliability": cal.bins,
            "per_class_accuracy": per_class_accuracy(predicted, labels, num_classes)}


def _corruption_accuracy(entry: Entry, test: ImageDataset, limit: int, device: torch.device, seed: int) -> dict:
    """{corruption: [accuracy at severity 1, 3, 5]} on the first ``limit`` test images, corrupted on ``device``."""
    images = test.images[:limit].to(device).float().div_(255)
    labels = test.labels[:limit]
    curves = {}
    for name in LEVELS:
        curve = []
        for severity in SEVERITIES:
            generator = torch.Generator(device=device).manual_seed(seed + severity)  # the same noise for every model
            corrupted = corrupt(images, name, severity, generator)
            predicted = logits_of(entry.runner, corrupted).argmax(1)
            curve.append(float((predicted == labels).float().mean()))
        curves[name] = curve
    return curves


def build_report(entries: list[Entry], images: Images, input_size: tuple[int, int, int], classes: list[str],
                 device: torch.device, settings: ReportSettings | None = None,
                 log: Callable[[str], None] = print) -> dict:
    """Every measurement for every entry; the teacher (role ``teacher``) is the reference for agreement and CKA."""
    settings = settings or ReportSettings()
    skipped = list(images.skipped)
    test = images.test
    limit = min(settings.test_images, len(test)) if test is not None else 0
    teacher = next((e for e in entries if e.role == "teacher"), None)
    unlabelled = test.images[:limit] if test is not None else images.unlabelled
    if test is None:
        skipped.append("accuracy, calibration, per-class accuracy and corruptions: no test images (give data=... with "
                       "a test split, e.g. data=shapes, data=cifar10_jpeg, data=imagefolder data.root=DIR)")
    if teacher is None and not any(reason.startswith("agreement with the teacher") for reason in skipped):
        skipped.append("agreement with the teacher and feature similarity: no teacher (give run=RUN_DIR or "
                       "teacher.checkpoint=PATH)")
    if settings.latency and device.type != "cuda":
        skipped.append("GPU throughput: no CUDA device")
    if not settings.latency:
        skipped.append("latency and peak memory: latency=false")
    if unlabelled is None or not len(unlabelled):
        unlabelled = None
        if teacher is not None:
            skipped.append("agreement with the teacher and feature similarity: no images (no test set, no synthetic "
                           "images)")
    reference_logits = reference_features = None
    if teacher is not None and unlabelled is not None:
        reference_logits = logits_of(teacher.runner.to(device), unlabelled)
        reference_features = _features(teacher.network.to(device), unlabelled[:settings.cka_images], device) \
            if teacher.network is not None else None
    rows = []
    for entry in entries:
        started = time.perf_counter()
        runner = entry.runner.to(device)
        entry = dataclasses.replace(entry, runner=runner)
        row = {"name": entry.name, "role": entry.role, "engine": runner.engine,
               "file": None if entry.file is None else str(entry.file)}
        if entry.note:
            row["note"] = entry.note
        row.update(_measure_costs(entry, input_size, device, settings))
        if unlabelled is not None:
            logits = logits_of(runner, unlabelled)
            if reference_logits is not None and entry.role != "teacher":
                row["agreement"] = float((logits.argmax(1) == reference_logits.argmax(1)).float().mean())
                row["agreement_images"] = "test" if test is not None else images.unlabelled_source
            if test is not None:
                row.update(_labelled_metrics(logits, test, limit, settings.bins, len(classes)))
                row["corruptions"] = _corruption_accuracy(entry, test, min(limit, settings.corruption_images), device,
                                                          settings.seed)
                row["mean_corruption_accuracy"] = sum(sum(c) for c in row["corruptions"].values()) / (
                    len(LEVELS) * len(SEVERITIES))
            if reference_features is not None and entry.role != "teacher":
                own = _features(entry.network.to(device), unlabelled[:settings.cka_images], device) \
                    if entry.network is not None and not runner.on_cpu_only else None
                row["cka_with_teacher"] = None if own is None else linear_cka(own, reference_features)
        if entry.network is not None:
            entry.network.cpu()
        rows.append(row)
        log(f"report: {entry.name} measured in {time.perf_counter() - started:.1f}s")
    if any(r.get("cka_with_teacher", 0) is None for r in rows):
        skipped.append("feature similarity of ONNX files: their penultimate features are not outputs of the file")
    return {
        "datafree_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpu": cpu_name(), "cpu_threads": settings.threads,
                    "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                    "torch": torch.__version__},
        "input_size": list(input_size),
        "classes": classes,
        "test_images": limit or None,
        "unlabelled_images": None if unlabelled is None else len(unlabelled),
        "corruptions": {name: {"severities": list(SEVERITIES), "values": list(levels), "what": what}
                        for name, (levels, what) in LEVELS.items()},
        "models": rows,
        "skipped": skipped,
    }


# -- writing ----------------------------------------------------------------------------------------------------------
def _size(value: int | None) -> str:
    if value is None:
        return "n/a"
    return f"{value / 1e6:.2f} MB" if value >= 1e5 else f"{value / 1e3:.1f} kB"


def _count(value: int | None) -> str:
    if value is None:
        return "n/a"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:.2f}{unit}"
    return str(value)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def headline_table(rows: list[dict]) -> list[str]:
    """The report's first table as Markdown lines: one row per network."""
    lines = ["| network | engine | parameters | MACs | file | CPU latency, batch 1 | GPU throughput | peak memory | "
             "accuracy | agreement | ECE | CKA | corrupted accuracy |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in rows:
        latency = row.get("cpu_latency_ms_batch1")
        gpu = row.get("gpu_throughput")
        memory = row.get("peak_memory_bytes")
        lines.append(" | ".join([
            f"| {row['name']}", row["engine"], _count(row.get("parameters")), _count(row.get("macs")),
            _size(row.get("file_bytes")),
            "n/a" if not latency else f"{latency['median_ms']:.3f} ms ± {latency['iqr_ms'] / 2:.2g}",
            "n/a" if not gpu else f"{gpu['images_per_s']:.0f} img/s",
            "n/a" if not memory else _size(memory["bytes"]),
            _pct(row.get("accuracy")), _pct(row.get("agreement")),
            "n/a" if row.get("ece") is None else f"{row['ece']:.3f}",
            "n/a" if row.get("cka_with_teacher") is None else f"{row['cka_with_teacher']:.3f}",
            _pct(row.get("mean_corruption_accuracy")) + " |",
        ]))
    return lines


def _memory_note(rows: list[dict]) -> str:
    """What the peak-memory column measured: on a GPU machine the allocator's peak at the throughput batch, else the
    CPU estimate at batch 1; the two differ by orders of magnitude, so the note names the one the rows hold."""
    where = sorted({r["peak_memory_bytes"]["where"] for r in rows if r.get("peak_memory_bytes")})
    return f"peak memory: {'; '.join(where)}." if where else "peak memory: not measured."


def markdown(report: dict, pictures: dict[str, str]) -> str:
    rows = report["models"]
    out = ["# datafree report", "",
           f"datafree {report['datafree_version']}, torch {report['machine']['torch']}, {report['created']}; CPU "
           f"latency on {report['machine']['cpu_threads']} thread(s) of {report['machine']['cpu']}"
           + (f", GPU {report['machine']['gpu']}" if report["machine"]["gpu"] else "") + ".", "",
           f"Test images: {report['test_images'] or 'none'}; latency is the median per call with ± half the "
           f"interquartile range; {_memory_note(rows)}", "", *headline_table(rows), ""]
    if any("per_class_accuracy" in r for r in rows):
        out += ["## Per-class accuracy", "", "| class | " + " | ".join(r["name"] for r in rows) + " |",
                "| --- |" + " ---: |" * len(rows)]
        for index, name in enumerate(report["classes"]):
            out.append(f"| {name} | " + " | ".join(_pct((r.get("per_class_accuracy") or [None] * (index + 1))[index])
                                                  for r in rows) + " |")
        out.append("")
    if any("corruptions" in r for r in rows):
        out += ["## Corruptions (accuracy at severity 1 / 3 / 5)", "",
                "| corruption | " + " | ".join(r["name"] for r in rows) + " |", "| --- |" + " ---: |" * len(rows)]
        for name in report["corruptions"]:
            out.append(f"| {name} | " + " | ".join(
                " / ".join(f"{100 * v:.1f}" for v in r["corruptions"][name]) if "corruptions" in r else "n/a"
                for r in rows) + " |")
        out.append("")
    if any(r.get("note") for r in rows):
        out += ["## Notes", ""] + [f"- {r['name']}: {r['note']}" for r in rows if r.get("note")] + [""]
    if pictures:
        out += ["## Pictures", ""] + [f"![{what}]({file})" for what, file in pictures.items()] + [""]
    if report["skipped"]:
        out += ["## Not measured", ""] + [f"- {reason}" for reason in report["skipped"]] + [""]
    return "\n".join(out)


def draw_pictures(report: dict, out_dir: Path) -> dict[str, str]:
    """The pictures the data allows: {what: file name}."""
    rows = report["models"]
    pictures = {}
    timed = [r for r in rows if r.get("accuracy") is not None and r.get("cpu_latency_ms_batch1")]
    if timed:
        panel = charts.scatter_panel([(r["name"], r["cpu_latency_ms_batch1"]["median_ms"], r["accuracy"]) for r in timed],
                                     "test accuracy against CPU latency (batch 1)", "milliseconds per image (log)",
                                     "accuracy")
        save_stacked([panel], out_dir / "accuracy_latency.png")
        pictures["accuracy against latency"] = "accuracy_latency.png"
    calibrated = [r for r in rows if r.get("reliability")]
    if calibrated:
        panels = [charts.reliability_panel(r["reliability"], r["name"], r["ece"]) for r in calibrated]
        save_stacked([charts.side_by_side(panels, 4)], out_dir / "reliability.png")
        pictures["reliability diagrams"] = "reliability.png"
    corrupted = [r for r in rows if r.get("corruptions")]
    if corrupted:
        ticks = [(0, "clean"), *((s, str(s)) for s in SEVERITIES)]
        panels = [charts.lines_panel({r["name"]: [(0, r["accuracy"]), *zip(SEVERITIES, r["corruptions"][name])]
                                      for r in corrupted}, name, "severity", "accuracy", ticks, legend=index == 0)
                  for index, name in enumerate(report["corruptions"])]
        save_stacked([charts.side_by_side(panels, 3)], out_dir / "corruptions.png")
        pictures["accuracy under corruptions"] = "corruptions.png"
    return pictures


def write_report(report: dict, out_dir: str | Path) -> dict[str, Path]:
    """``report.json``, ``report.md`` and the pictures into ``out_dir``; the paths written."""
    out_dir = Path(out_dir)
    pictures = draw_pictures(report, out_dir)
    report = {**report, "pictures": pictures}
    atomic_write(out_dir / "report.json", lambda h: h.write(json.dumps(report, indent=2).encode()))
    atomic_write(out_dir / "report.md", lambda h: h.write(markdown(report, pictures).encode()))
    return {"report": out_dir / "report.json", "markdown": out_dir / "report.md",
            **{name: out_dir / name for name in pictures.values()}}


def headline(student: nn.Module, input_size: tuple[int, int, int], file: Path | None,
             test: ImageDataset | None, limit: int = 10000) -> str:
    """What ``datafree distill`` adds at its end to the accuracy and agreement it has just printed, in one line: file
    size, parameters, MACs, CPU latency at batch 1, and the expected calibration error when there are test images.
    Cheap: one student pass over at most ``limit`` test images (a random sample of a larger test set; no teacher
    pass) and twenty timed calls."""
    device = next((p.device for p in student.parameters()), torch.device("cpu"))
    was_training = student.training
    student.eval()
    try:
        return "; ".join(_headline_parts(student, device, input_size, file, test, limit))
    finally:
        student.train(was_training)


def _headline_parts(student, device, input_size, file, test, limit) -> list[str]:
    parts = [f"{_size(file.stat().st_size) if file is not None and file.is_file() else 'n/a'} file",
             f"{_count(parameter_count(student))} parameters", f"{_count(multiply_accumulates(student, input_size))} MACs"]
    cpu_student = student if device.type == "cpu" else copy.deepcopy(student).cpu()
    latency = quick_cpu_latency(Runner("student", "pytorch", module=cpu_student), input_size)
    threads = latency.threads
    parts.append(f"CPU latency {latency.median_ms:.3f} ms at batch 1 ({threads} thread{'s' if threads > 1 else ''})")
    if test is not None:
        if len(test) > limit:  # a random sample: data sets come sorted by class, so a prefix is a few classes
            test = test.sample(limit)
        images, labels = test.images, test.labels
        logits = logits_of(Runner("student", "pytorch", module=student, device=device), images)
        parts.append(f"ECE {calibration(logits, labels).ece:.3f}")
    else:
        parts.append("no test images: ECE not measured")
    return parts
