"""Which layers does int8 hurt most? When the int8 file agrees with the float student less than deploy seeks, keep
the few layers whose quantisation costs most in float, and quantise the rest.

A MobileNet's depthwise convolutions are the known case: after BatchNorm folding, their channels' outputs span very
different ranges, and one uint8 scale per tensor (what static int8 activations get) blurs the small ones. Keeping
one or two such layers in float costs little size or speed and recovers most of the agreement.

The ranking is data-free: each weight layer is quantised alone (every other layer in float) and scored by how far
its logits move from the float student's on the synthetic check images (mean squared difference). The layers are
then kept in float in that order, one more at a time, until the file reaches the agreement sought on the same
synthetic images or the limit is reached (then the count that agreed best): no test image takes part in any choice,
so the int8 accuracy deploy reports on test images is not selected on them. The activation ranges are calibrated once (:class:`~datafree.ship.quantise.Quantiser`), so each try costs
a quantisation and a pass over the check images, not a calibration.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from datafree.ship.parity import compare
from datafree.ship.quantise import Int8File, Quantiser
from datafree.ship.runners import Runner, load_runner


@dataclass
class Search:
    """What the search tried: every layer's score, the layers it kept in float (node names, most sensitive first),
    the agreement with 0, 1, 2, ... layers in float, and its duration."""

    scores: dict[str, float] = field(default_factory=dict)
    kept: list[str] = field(default_factory=list)
    agreements: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self, names: dict[str, str]) -> dict:
        ranked = sorted(self.scores, key=self.scores.get, reverse=True)
        return {"layers_weighed": len(self.scores), "score": "mean squared logit difference from float, layer "
                "quantised alone, on the synthetic check images",
                "most_sensitive": [{"layer": names[n], "score": round(self.scores[n], 6)} for n in ranked[:10]],
                "kept_in_float": [names[n] for n in self.kept], "agreement_by_layers_in_float": self.agreements,
                "seconds": round(self.seconds, 1)}


def rank_layers(quantiser: Quantiser, reference: Runner, images: torch.Tensor, threads: int) -> dict[str, float]:
    """Each weight layer's score: the mean squared logit difference from ``reference`` on ``images`` when that
    layer alone is quantised."""
    want = reference.logits(images)
    scores = {}
    for node in quantiser.layers:
        others = tuple(n for n in quantiser.layers if n != node)
        made = quantiser.write(quantiser.scratch / "alone.int8.onnx", others)
        got = load_runner("int8, one layer", made.path, "onnxruntime", threads).logits(images)
        scores[node] = float((got - want).pow(2).mean())
    return scores


def keep_sensitive_layers_in_float(quantiser: Quantiser, out: Path, reference: Runner, images: torch.Tensor,
                                   first: float, target: float, limit: int, threads: int,
                                   log: Callable[[str], None] = print) -> tuple[Int8File, Search]:
    """Rewrite ``out`` with the most sensitive layers in float, one more at a time (at most ``limit``, and one layer
    stays int8 at least), until its top-1 agreement with ``reference`` on the synthetic ``images`` reaches
    ``target``; short of it, the count that agreed best (the fewest layers among equals; none when none helped:
    ``first`` is the all-int8 file's agreement there). Every choice is made on synthetic images: no test image.
    The file written and the search."""
    started = time.perf_counter()
    search = Search(agreements=[round(first, 6)])
    search.scores = rank_layers(quantiser, reference, images, threads)
    ranked = sorted(search.scores, key=search.scores.get, reverse=True)

    def attempt(count: int) -> tuple[Int8File, float]:
        made = quantiser.write(out, tuple(ranked[:count]))
        runner = load_runner("student int8", made.path, "onnxruntime", threads)
        return made, compare(reference, runner, {"synthetic": images}).agreement

    made, last = None, 0
    for last in range(1, min(limit, len(ranked) - 1) + 1):
        made, agreement = attempt(last)
        search.agreements.append(round(agreement, 6))
        if agreement >= target:
            break
    best = max(range(len(search.agreements)), key=lambda i: (search.agreements[i], -i))
    if made is None or best != last:  # the target out of reach: back to the count that agreed best
        made, _ = attempt(best)
    search.kept = ranked[:best]
    search.seconds = time.perf_counter() - started
    agreement = search.agreements[best]
    reached = "" if agreement >= target else f", short of the {100 * target:g}% sought"
    which = {0: "none", 1: "the most sensitive"}.get(best, f"the {best} most sensitive")
    names = f" ({', '.join(made.float_layers)})" if best else " (none helped)"
    log(f"int8: kept in float {which} of {len(ranked)} weight layers{names}: top-1 agreement with float "
        f"{100 * agreement:.2f}% on the synthetic check images{reached} ({search.seconds:.0f} s)")
    return made, search
