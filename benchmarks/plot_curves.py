"""Accuracy against wall time from runs' summary.csv files, drawn to one PNG.

    python benchmarks/plot_curves.py OUT.png "LABEL=run1.csv,run2.csv" ["LABEL=..." ...] [--title T] [--ymin 0.6]
        [--target 0.95]

Each curve is the student/teacher accuracy ratio (both measured in the same run) at each
evaluation; several CSVs under one label are seeds, drawn thin, with their mean bold where
they share evaluation points. A run that averaged its weights (trainer.ema_decay) also gets the weights' own
curve, dashed, in the same colour. Needs matplotlib (pip install matplotlib).
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


# After matplotlib's ten cycle colours (C0-C9), which the docs name curves by, colours unlike any of them: the cycle
# would start again at C0 and give an eleventh curve the first one's colour.
_MORE_COLOURS = ("black", "gold", "navy", "lime")


def read(path: Path) -> tuple[list[float], list[float], list[float]]:
    """Times, the student's ratios, and the weights' own ratios where the run averaged its weights (else empty)."""
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("student_accuracy")]
    weights = [float(r["unaveraged_accuracy"]) / float(r["teacher_accuracy"]) for r in rows
               if r.get("unaveraged_accuracy")]
    return ([float(r["time_s"]) for r in rows],
            [float(r["student_accuracy"]) / float(r["teacher_accuracy"]) for r in rows],
            weights if len(weights) == len(rows) else [])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("curves", nargs="+", help="LABEL=a.csv[,b.csv...]")
    parser.add_argument("--title", default="")
    parser.add_argument("--ymin", type=float, default=0.0, help="the ratio axis' lower end (to see swings near 1)")
    parser.add_argument("--target", type=float, action="append", default=[],
                        help="a ratio the runs were asked to reach, drawn as a dotted line (may repeat)")
    args = parser.parse_args()
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    for i, spec in enumerate(args.curves):
        label, files = spec.split("=", 1)
        color = f"C{i}" if i < 10 else _MORE_COLOURS[(i - 10) % len(_MORE_COLOURS)]
        runs = [read(Path(p)) for p in files.split(",")]
        for times, ratios, weights in runs:
            ax.plot(times, ratios, color=color, lw=0.8 if len(runs) > 1 else 1.8,
                    alpha=0.5 if len(runs) > 1 else 1.0, label=None if len(runs) > 1 else label, marker=".",
                    ms=10 if len(times) == 1 else 6)  # a run with one evaluation is a dot: make it seen
            if weights:
                ax.plot(times, weights, color=color, lw=0.8, ls="--", alpha=0.7,
                        label=None if len(runs) > 1 else "the same run: the weights themselves")
        if len(runs) > 1:
            n = min(len(r[0]) for r in runs)
            times = [sum(r[0][k] for r in runs) / len(runs) for k in range(n)]
            means = [sum(r[1][k] for r in runs) / len(runs) for k in range(n)]
            ax.plot(times, means, color=color, lw=2, label=f"{label} (mean of {len(runs)})")
    for target in args.target:
        ax.axhline(target, color="0.4", ls=":", lw=1, label=f"target {target:g} x the teacher")
    ax.set_xlabel("wall time from the first synthesis step (s)")
    ax.set_ylabel("student / teacher test accuracy")
    ax.set_ylim(args.ymin, 1.0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    if args.title:
        ax.set_title(args.title, fontsize=10)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out)
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
