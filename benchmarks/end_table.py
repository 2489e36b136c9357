"""The end-of-run table of several runs, from the summary.csv files benchmarks/cifar10_distill.sh leaves in a folder.

    python3 benchmarks/end_table.py FOLDER PREFIX ROW [ROW ...]      (reads FOLDER/PREFIX<ROW>_summary.csv)

One markdown row per run: the student's accuracy at the END of the run (what the tables report), the
best evaluation during it (only to show how much an end-of-run figure can differ from a best-of
figure, which is selection on test data), the student/teacher ratio, student steps and wall time.
A run without a summary (it failed before its first evaluation) gets a row that says so.
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path


def main() -> None:
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    folder, prefix, rows = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
    print("| row | student accuracy (end) | best evaluation | student / teacher | student steps | wall time |")
    print("| --- | --- | --- | --- | --- | --- |")
    for row in rows:
        path = folder / f"{prefix}{row}_summary.csv"
        evaluations = list(csv.DictReader(path.open())) if path.is_file() else []
        evaluations = [e for e in evaluations if e.get("student_accuracy")]
        if not evaluations:
            print(f"| {row} | no evaluation (see {prefix}{row}.log) | | | | |")
            continue
        end = evaluations[-1]
        best = max(evaluations, key=lambda r: float(r["student_accuracy"]))
        ratio = float(end["student_accuracy"]) / float(end["teacher_accuracy"])
        print(f"| {row} | {float(end['student_accuracy']):.2%} | {float(best['student_accuracy']):.2%} at "
              f"{float(best['time_s']):.0f} s | {ratio:.3f} | {end['step']} | {float(end['time_s']):.0f} s |")


if __name__ == "__main__":
    main()
