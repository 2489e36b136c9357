"""The end-of-run table of runs repeated over seeds, from their logs (the CPU demo scripts' NAME_sSEED.log files).

    python3 benchmarks/seeds_table.py FOLDER NAME [NAME ...]      (reads FOLDER/NAME_s0.log, _s1.log, _s2.log)

One markdown row per NAME: its teacher's accuracy, the student's at the end of each seed's run (distill's final
"student ...: test accuracy" line, never the best evaluation), their mean ± standard deviation, and mean / teacher.
"""
from __future__ import annotations

import re
import statistics
import sys
from pathlib import Path

SEEDS = (0, 1, 2)


def accuracy(log: str, who: str) -> float:
    return float(re.search(rf"^{who} \S+: test accuracy ([\d.]+)%", log, re.M).group(1))


def main(folder: Path, names: list[str]) -> None:
    print("| variant | teacher | student, seeds 0 / 1 / 2 | mean ± sd | x teacher |")
    print("| --- | ---: | --- | ---: | ---: |")
    for name in names:
        logs = [(folder / f"{name}_s{seed}.log").read_text() for seed in SEEDS]
        student = [accuracy(log, "student") for log in logs]
        teacher = accuracy(logs[-1], "teacher")
        mean = statistics.mean(student)
        print(f"| {name} | {teacher:.2f}% | {' / '.join(f'{s:.2f}%' for s in student)} | {mean:.2f}% ± "
              f"{statistics.stdev(student):.2f} | {mean / teacher:.3f} |")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
