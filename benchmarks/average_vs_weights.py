"""Where the running average of the student's weights (trainer.ema_decay) ended against the weights themselves,
for every kept run that logged both, ordered by the run's student steps (docs/benchmarks.md, "The 128-px
ResNet-18 with the recipe as it is now"):

    python benchmarks/average_vs_weights.py [benchmarks/results]

One line per run: the average's accuracy minus the weights' at the run's last evaluation (points), its student
steps, its wall time and its summary.csv. The CPU runs on demo data evaluate on 300 to 2,000 test images, so a
difference of a point or two there is a few images; the GPU runs evaluate on CIFAR-10's 10,000.
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path


def last_row(path: Path) -> dict | None:
    """The run's last evaluation that has both accuracies, or None when it never averaged its weights."""
    with path.open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r.get("unaveraged_accuracy") and r.get("student_accuracy")]
    return rows[-1] if rows else None


def main(root: Path) -> None:
    found = []
    for path in sorted(root.rglob("*summary.csv")):
        row = last_row(path)
        if row is not None:
            gap = 100 * (float(row["student_accuracy"]) - float(row["unaveraged_accuracy"]))
            found.append((int(row["step"]), gap, float(row["time_s"]), path))
    print("average - weights (points) | student steps | wall time (s) | run")
    for steps, gap, seconds, path in sorted(found, key=lambda f: (f[0], str(f[3]))):
        print(f"{gap:+6.2f} | {steps:6d} | {seconds:6.0f} | {path.relative_to(root)}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/results"))
