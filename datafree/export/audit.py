"""``datafree audit``: did anything private leak into a synthetic data set?

For every synthetic image the audit finds its nearest image of the owner's real training
set in two spaces: pixels (RMS difference, in [0, 1] units) and the teacher's penultimate
features (cosine distance), each also against the mirrored image. The distances are
read against a baseline: how close genuinely new real images (the held-out split) come
to the training set. A synthetic image closer to a training image than all but
``baseline_quantile`` of the held-out images is flagged as a near-duplicate in that space
(pixels: a copy, possibly mirrored; features: an image the teacher sees as it sees a training
image, which a good synthetic image also approaches, so read those flags with the pictures).

The search is batched matrix products on the device: a fast GEMM (TF32 on GPUs) ranks a
few candidates per image, and exact distances decide among them, chunk by chunk, so that
50k x 50k fits in a GPU's memory and no Python loop runs per image.
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import torch
from torch import nn

from datafree.data.dataset import ImageDataset
from datafree.errors import DatafreeError
from datafree.export.pictures import histogram_panel, pair_panel, save_stacked
from datafree.export.reader import SyntheticSet
from datafree.ops.pixels import dequantise
from datafree.ops.hooks import PenultimateFeatures
from datafree.utils.checkpoint import atomic_write_bytes
from datafree.utils.device import autocast

SPACES = ("pixel", "feature")
_QUANTILES = (0.0, 0.001, 0.01, 0.05, 0.25, 0.5, 0.75, 1.0)
_CANDIDATES = 8


@dataclasses.dataclass
class Nearest:
    """For each query image: the distance to its nearest key, that key's index, and whether the mirror matched."""

    distance: torch.Tensor
    index: torch.Tensor
    flipped: torch.Tensor

    def cpu(self) -> "Nearest":
        return Nearest(self.distance.cpu(), self.index.cpu(), self.flipped.cpu())


def _rows_per_chunk(keys: int, dim: int, candidates: int, budget_bytes: int) -> int:
    """Query rows per chunk: the distance block (rows x keys) and the candidate block (rows x candidates x dim) fit."""
    return max(1, min(budget_bytes // (4 * keys), budget_bytes // (4 * candidates * dim)))


@torch.no_grad()
def nearest(queries: torch.Tensor, keys: torch.Tensor, metric: str, budget_bytes: int = 1 << 30,
            transform=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Distance to and index of the nearest row of ``keys`` for every row of ``queries`` (both on one device).

    ``metric`` ``l2``: RMS difference of the rows; ``cosine``: 1 - cosine similarity of rows that are
    already unit length. ``transform`` maps a chunk of ``queries`` to float rows (e.g. uint8 pixels
    to [0, 1]), so that only one chunk is ever held as float.
    """
    if metric not in ("l2", "cosine"):
        raise ValueError(f"metric must be 'l2' or 'cosine', got {metric!r}")
    n, (m, dim) = queries.shape[0], keys.shape
    k = min(_CANDIDATES, m)
    rows = _rows_per_chunk(m, dim, k, budget_bytes)
    key_sq = keys.pow(2).sum(1) if metric == "l2" else None
    distance = torch.empty(n, device=keys.device)
    index = torch.empty(n, dtype=torch.int64, device=keys.device)
    for start in range(0, n, rows):
        q = queries[start:start + rows]
        q = transform(q) if transform is not None else q
        if metric == "l2":  # |q - k|^2 = |q|^2 + |k|^2 - 2 q.k; |q|^2 is the same for every key of a row
            candidates = torch.addmm(key_sq.unsqueeze(0), q, keys.T, alpha=-2).topk(k, dim=1, largest=False).indices
            exact = (q.unsqueeze(1) - keys[candidates]).pow(2).mean(2).sqrt()
        else:
            candidates = (q @ keys.T).topk(k, dim=1).indices
            exact = (1 - (q.unsqueeze(1) * keys[candidates]).sum(2)).clamp_min(0)
        best, where = exact.min(1)
        distance[start:start + rows] = best
        index[start:start + rows] = candidates.gather(1, where.unsqueeze(1)).squeeze(1)
    return distance, index


def nearest_with_flips(search, queries: torch.Tensor, mirrored: torch.Tensor | None) -> Nearest:
    """``search(queries)`` and, when ``mirrored`` is given, ``search(mirrored)``: whichever is nearer, per image."""
    distance, index = search(queries)
    flipped = torch.zeros_like(index, dtype=torch.bool)
    if mirrored is not None:
        distance_m, index_m = search(mirrored)
        flipped = distance_m < distance
        distance, index = torch.where(flipped, distance_m, distance), torch.where(flipped, index_m, index)
    return Nearest(distance, index, flipped)


def _pixels(chunk: torch.Tensor) -> torch.Tensor:
    return dequantise(chunk).flatten(1)


def pixel_search(queries_u8: torch.Tensor, keys: torch.Tensor, flips: bool, budget_bytes: int) -> Nearest:
    """Nearest training image by pixels for uint8 queries on the device; ``keys`` are the flat float training pixels."""
    search = lambda q: nearest(q, keys, "l2", budget_bytes, transform=_pixels)  # noqa: E731
    return nearest_with_flips(search, queries_u8, queries_u8.flip(-1) if flips else None)


def check_feature_teacher(model: nn.Module) -> None:
    """The feature space is the input of the teacher's last ``nn.Linear``, read by a hook: refuse what has neither."""
    if any(isinstance(m, torch.jit.ScriptModule) for m in model.modules()):
        raise DatafreeError("the audit reads the teacher's penultimate features through a forward hook, which cannot "
                            "attach to a TorchScript teacher: set features=false (pixel space only), or load the teacher "
                            "from its Python class (teacher=module).")
    if not any(isinstance(m, nn.Linear) for m in model.modules()):
        raise DatafreeError(f"the audit's feature space is the input of the teacher's final nn.Linear, and "
                            f"{type(model).__name__} has none: set features=false (pixel space only).")


@torch.no_grad()
def penultimate_features(model: nn.Module, images_u8: torch.Tensor, batch_size: int, amp: bool) -> torch.Tensor:
    """Unit-length inputs of the model's final ``nn.Linear`` for uint8 images on the model's device."""
    device = images_u8.device
    out = []
    with PenultimateFeatures(model, "the audit's feature space", "set features=false (pixel space only).") as tap:
        for start in range(0, images_u8.shape[0], batch_size):
            with autocast(device, amp):
                model(dequantise(images_u8[start:start + batch_size]))
            out.append(tap.features.float().flatten(1))
    return torch.nn.functional.normalize(torch.cat(out), dim=1)


def feature_search(model: nn.Module, queries_u8: torch.Tensor, keys: torch.Tensor, flips: bool, batch_size: int,
                   amp: bool, budget_bytes: int) -> Nearest:
    search = lambda images: nearest(penultimate_features(model, images, batch_size, amp), keys, "cosine", budget_bytes)  # noqa: E731
    return nearest_with_flips(search, queries_u8, queries_u8.flip(-1) if flips else None)


def quantiles(values: torch.Tensor) -> dict[str, float]:
    if not values.numel():
        return {}
    q = torch.quantile(values.double(), torch.tensor(_QUANTILES, dtype=torch.float64))
    return {f"q{p:g}": round(float(v), 6) for p, v in zip(_QUANTILES, q)} | {"mean": round(float(values.double().mean()), 6)}


def check_comparable(synthetic: SyntheticSet, real: ImageDataset, what: str) -> None:
    """The real set must be of the synthetic set's task: same image shape, same class list."""
    shape = tuple(real.images.shape[1:])
    if shape != synthetic.image_shape:
        channels = synthetic.image_shape[0]
        convert = (f", or, where these are its images, set data.channels={channels} to read them with the synthetic "
                   f"set's {channels} channel(s)" if shape[1:] == tuple(synthetic.image_shape[1:]) else "")
        raise DatafreeError(f"the real {what} set has images of {list(shape)} but the synthetic set {list(synthetic.image_shape)}: "
                            f"audit against the data the teacher was trained on (data=..., data.image_size=...){convert}.")
    if list(real.classes) != synthetic.classes:
        raise DatafreeError(f"the real {what} set's classes {list(real.classes)[:10]} differ from the synthetic set's "
                            f"{synthetic.classes[:10]}: audit against the data the teacher was trained on.")


@dataclasses.dataclass
class AuditSettings:
    flips: bool = True
    features: bool = True
    pixel_threshold: float | None = None
    feature_threshold: float | None = None
    baseline_quantile: float = 0.01
    closest: int = 16
    batch_size: int = 1000
    budget_mb: int = 1024
    amp: bool = True


@dataclasses.dataclass
class AuditResult:
    """The JSON-ready ``report`` and what its pictures are drawn from (rows of ``synthetic`` are sample indices)."""

    report: dict
    synthetic: torch.Tensor
    train: torch.Tensor
    nearest: dict[str, dict[str, Nearest]]
    thresholds: dict[str, float]


def run_audit(synthetic: SyntheticSet, train: ImageDataset, held_out: ImageDataset | None, teacher: nn.Module | None,
              device: torch.device, settings: AuditSettings, log=print) -> AuditResult:
    """Audit a complete synthetic set against ``train`` (and ``held_out``, the baseline); ``teacher`` None: pixels only."""
    check_comparable(synthetic, train, "training")
    if held_out is not None:
        check_comparable(synthetic, held_out, "held-out")
    if held_out is None and (settings.pixel_threshold is None or (settings.features and settings.feature_threshold is None)):
        raise DatafreeError("without a held-out real set (data.test) there is no baseline to set the thresholds from: "
                            "give data.test, or set pixel_threshold and feature_threshold.")
    started = time.perf_counter()
    budget = int(settings.budget_mb) << 20
    samples = synthetic.load()
    queries = samples.images.to(device)
    keys_u8 = train.images.to(device)
    results: dict[str, dict[str, Nearest]] = {}
    keys = _pixels(keys_u8)
    results["pixel"] = {"synthetic": pixel_search(queries, keys, settings.flips, budget).cpu()}
    if held_out is not None:
        results["pixel"]["baseline"] = pixel_search(held_out.images.to(device), keys, settings.flips, budget).cpu()
    del keys
    log(f"audit: pixel space done ({time.perf_counter() - started:.1f}s)")
    if settings.features and teacher is not None:
        keys = penultimate_features(teacher, keys_u8, settings.batch_size, settings.amp)
        search = lambda q: feature_search(teacher, q, keys, settings.flips, settings.batch_size, settings.amp, budget)  # noqa: E731
        results["feature"] = {"synthetic": search(queries).cpu()}
        if held_out is not None:
            results["feature"]["baseline"] = search(held_out.images.to(device)).cpu()
        del keys
        log(f"audit: feature space done ({time.perf_counter() - started:.1f}s)")
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    search_time = time.perf_counter() - started

    thresholds, sources = {}, {}
    for space in results:
        given = settings.pixel_threshold if space == "pixel" else settings.feature_threshold
        if given is not None:
            thresholds[space], sources[space] = float(given), "given"
        else:
            baseline = results[space]["baseline"].distance
            thresholds[space] = float(torch.quantile(baseline.double(), settings.baseline_quantile))
            sources[space] = f"the {settings.baseline_quantile:g} quantile of held-out-to-training distances"
    flags = {space: results[space]["synthetic"].distance <= thresholds[space] for space in results}
    flags["any"] = torch.stack(list(flags.values())).any(0)

    def entry(i: int) -> dict:
        return {"index": int(samples.indices[i]), "label": int(samples.labels[i]),
                **{space: {"nearest": int(r["synthetic"].index[i]), "distance": round(float(r["synthetic"].distance[i]), 6),
                           "flipped": bool(r["synthetic"].flipped[i])} for space, r in results.items()}}

    closest = {space: [entry(int(i)) for i in r["synthetic"].distance.argsort(stable=True)[: settings.closest]]
               for space, r in results.items()}

    def flagged(space: str) -> dict:
        chosen = flags[space].nonzero().reshape(-1)
        by = "pixel" if space == "any" else space
        chosen = chosen[results[by]["synthetic"].distance[chosen].argsort(stable=True)]  # closest first
        return {"count": int(chosen.numel()), "fraction": round(chosen.numel() / max(1, len(samples)), 6),
                "samples": [entry(int(i)) for i in chosen]}
    report = {
        "synthetic": {"path": str(synthetic.folder), "count": len(samples), "teacher_sha256": synthetic.teacher.get("sha256")},
        "real": {"train": len(train), "held_out": None if held_out is None else len(held_out),
                 "image_size": list(synthetic.image_shape), "classes": synthetic.classes},
        "settings": dataclasses.asdict(settings),
        "metrics": {"pixel": "RMS pixel difference in [0, 1] units", "feature": "1 - cosine similarity of the teacher's "
                    "penultimate features"},
        "thresholds": {space: {"value": round(thresholds[space], 6), "from": sources[space]} for space in results},
        "distances": {space: {kind: quantiles(n.distance) for kind, n in r.items()} for space, r in results.items()},
        "below_baseline": {space: _below(r) for space, r in results.items()},
        "flagged": {space: flagged(space) for space in flags},
        "closest": closest,
        "nearest": {space: {"index": r["synthetic"].index.tolist(),
                            "distance": [round(v, 6) for v in r["synthetic"].distance.tolist()],
                            "flipped": r["synthetic"].flipped.tolist()} for space, r in results.items()},
        "search_time_s": round(search_time, 3),
        "device": str(device),
    }
    return AuditResult(report, samples.images, train.images, results, thresholds)


def _below(results: dict[str, Nearest]) -> dict | None:
    """How the synthetic distances sit in the baseline's distribution: the share below its 1st percentile and median."""
    if "baseline" not in results:
        return None
    baseline, synth = results["baseline"].distance.double(), results["synthetic"].distance.double()
    q1, q50 = torch.quantile(baseline, 0.01), torch.quantile(baseline, 0.5)
    return {"below_baseline_q0.01": round(float((synth < q1).double().mean()), 6),
            "below_baseline_median": round(float((synth < q50).double().mean()), 6)}


def write_report(result: AuditResult, out_dir: str | Path) -> dict[str, Path]:
    """``audit.json``, ``closest_pairs.png`` and ``distances.png`` in ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    report = result.report
    paths = {"report": atomic_write_bytes(json.dumps(report, indent=1).encode() + b"\n", out_dir / "audit.json")}
    samples, train, results, thresholds = result.synthetic, result.train, result.nearest, result.thresholds
    unit = {"pixel": "RMS pixel difference", "feature": "feature cosine distance"}
    panels = []
    for space, entries in report["closest"].items():
        pairs = []
        for e in entries:
            real = train[e[space]["nearest"]]
            real = real.flip(-1) if e[space]["flipped"] else real  # shown as it matched
            pairs.append((samples[e["index"]], real,
                          f"#{e['index']}\n{e[space]['distance']:.3g}{' m' if e[space]['flipped'] else ''}"))
        panels.append(pair_panel(pairs, title=f"closest pairs by {unit[space]} (m: the mirrored real image matched)"))
    paths["pairs"] = save_stacked(panels, out_dir / "closest_pairs.png")
    panels = [histogram_panel({kind.replace("baseline", "held-out real -> train").replace("synthetic", "synthetic -> train"):
                               n.distance for kind, n in r.items()},
                              title=f"nearest training image: {unit[space]}", xlabel=unit[space],
                              markers={"threshold": thresholds[space]}) for space, r in results.items()]
    paths["distances"] = save_stacked(panels, out_dir / "distances.png")
    return paths
