"""The scaling table from the rows benchmarks/scaling.sh wrote (one CSV per call, or one for all):

    python3 benchmarks/scaling_table.py scaling.csv [more.csv ...]

Distillation rows: student steps per second and student images per second (steps x the global student batch),
synthesized images per second (the run's images over its own clock, synthesis and student steps sharing it),
each also as a ratio to the single-process run; the student's accuracy at the END of the run and its ratio to
the teacher; the first evaluation at 0.9 x the teacher. `synthesize` rows: images per second of the job and the
ratio to one process. A ratio needs the single-process row (or the one-process synthesize row) among the inputs.
"""
from __future__ import annotations

import csv
import sys


def rate(row: dict, key: str) -> float:
    return float(row[key]) / float(row["run_s"])


def ratio(value: float, reference: float | None) -> str:
    return f"{value / reference:.2f}×" if reference else "–"


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    rows = [r for path in sys.argv[1:] for r in csv.DictReader(open(path, newline=""))]
    runs = [r for r in rows if r["run"] != "synthesize"]
    single = next((r for r in runs if r["run"] == "single"), None)

    def per_s(row: dict | None, what: str) -> float | None:
        if row is None:
            return None
        if what == "steps":
            return rate(row, "student_steps")
        if what == "student_images":
            return rate(row, "student_steps") * int(row["student_batch"])
        return rate(row, "images")

    print("| run | processes | student batch (global) | student steps/s | student images/s | synthesized images/s "
          "| student at the end | × teacher | first at 0.9 × teacher |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in runs:
        cells = []
        for what in ("steps", "student_images", "synthesized"):
            value = per_s(r, what)
            cells.append(f"{value:,.0f} ({ratio(value, per_s(single, what))})")
        accuracy, teacher = float(r["student_accuracy"]), float(r["teacher_accuracy"])
        reached = f"{float(r['time_to_90pct_s']):.0f} s" if r["time_to_90pct_s"] else "not reached"
        print(f"| {r['run']} | {r['processes']} | {int(r['student_batch']):,} | " + " | ".join(cells)
              + f" | {accuracy:.2%} | {accuracy / teacher:.3f} | {reached} |")

    synth = [r for r in rows if r["run"] == "synthesize"]
    if synth:
        one = next((rate(r, "images") for r in synth if r["processes"] == "1"), None)
        print()
        print("| `synthesize` | processes | images | job time | images/s |")
        print("| --- | --- | --- | --- | --- |")
        for r in synth:
            print(f"| synthesize | {r['processes']} | {int(r['images']):,} | {float(r['run_s']):.1f} s | "
                  f"{rate(r, 'images'):,.0f} ({ratio(rate(r, 'images'), one)}) |")


if __name__ == "__main__":
    main()
