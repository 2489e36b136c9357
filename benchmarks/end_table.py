"""The end-of-run table of several runs, from the summary.csv files benchmarks/cifar10_distill.sh leaves in a folder.

    python3 benchmarks/end_table.py FOLDER PREFIX ROW [ROW ...]      (reads FOLDER/PREFIX<ROW>_summary.csv)

One markdown row per run: the student's accuracy at the END of the run (what the tables report), the
best evaluation during it (only to show how much an end-of-run figure can differ from a best-of
figure, which is selection on test data), the student/teacher ratio, student steps and wall time.
A run whose summary did not come back (a command stopped before the copy of its last evaluation) is read from
the evaluation lines of its log, FOLDER/PREFIX<ROW>.log, instead; a run with neither (it failed before its first
evaluation) gets a row that says so. A run whose log does not end with distill's closing report (the
"student NAME: test accuracy" line: a command's time limit or the machine stopped it, "interrupted: ...") did not
end: its row says so and gives its last evaluation as such, with no ratio, since that is not an end-of-run figure
(a run resumed in pieces ends when its last piece does). Runs with a running average of the student's weights (trainer.ema_decay) get a
column more: the weights' own accuracy at the end (the student's is the average's, what such a run delivers).
"""
from __future__ import annotations

import csv
import re
import sys
from pathlib import Path


# distill's evaluation line: "round 186 step 3710: student 0.8619 teacher 0.9099 agreement 0.8883 (542s) | ...", with
# trainer.ema_decay "student 0.8619 (the average of its weights; the weights themselves 0.8512) teacher ..."
EVALUATION = re.compile(r"round (?P<round>\d+) step (?P<step>\d+): student (?P<student_accuracy>[\d.]+) "
                        r"(?:\(the average of its weights; the weights themselves (?P<unaveraged_accuracy>[\d.]+)\) )?"
                        r"teacher (?P<teacher_accuracy>[\d.]+) .*?\((?P<time_s>[\d.]+)s\)")


def evaluations_of(folder: Path, name: str) -> list[dict[str, str]]:
    """Each evaluation of run NAME, from its summary.csv, or from its log when the summary is not there."""
    summary, log = folder / f"{name}_summary.csv", folder / f"{name}.log"
    if summary.is_file():
        rows = list(csv.DictReader(summary.open()))
    elif log.is_file():
        rows = [m.groupdict() for m in map(EVALUATION.search, log.read_text().splitlines()) if m]
    else:
        rows = []
    return [r for r in rows if r.get("student_accuracy")]


# distill's closing report, and the line the CLI prints when a signal stops a run (its state saved)
CLOSING = re.compile(r"^student .+: test accuracy ")
INTERRUPTED = re.compile(r"^datafree: interrupted: ")


def ended(folder: Path, name: str) -> bool | None:
    """Whether run NAME's log ends with distill's closing report (a resumed run's last piece counts); None: no log."""
    log = folder / f"{name}.log"
    if not log.is_file():
        return None
    last = None
    for line in log.read_text().splitlines():
        if CLOSING.search(line):
            last = True
        elif INTERRUPTED.search(line):
            last = False
    return bool(last)


def main() -> None:
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    folder, prefix, rows = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
    runs = {row: evaluations_of(folder, f"{prefix}{row}") for row in rows}
    averaged = any(r and r[-1].get("unaveraged_accuracy") for r in runs.values())
    extra = (" the weights themselves (end) |", " --- |") if averaged else ("", "")
    print(f"| row | student accuracy (end) |{extra[0]} best evaluation | student / teacher | student steps | wall time |")
    print(f"| --- | --- |{extra[1]} --- | --- | --- | --- |")
    for row, evaluations in runs.items():
        if not evaluations:
            print(f"| {row} | no evaluation (see {prefix}{row}.log) |{' |' if averaged else ''} | | | |")
            continue
        end = evaluations[-1]
        if ended(folder, f"{prefix}{row}") is False:
            weights = f" {float(end['unaveraged_accuracy']):.2%} |" if end.get("unaveraged_accuracy") else " |"
            print(f"| {row} | did not end (see {prefix}{row}.log): its last evaluation {float(end['student_accuracy']):.2%} "
                  f"at {float(end['time_s']):.0f} s |{weights if averaged else ''} | | {end['step']} | |")
            continue
        best = max(evaluations, key=lambda r: float(r["student_accuracy"]))
        ratio = float(end["student_accuracy"]) / float(end["teacher_accuracy"])
        weights = f" {float(end['unaveraged_accuracy']):.2%} |" if end.get("unaveraged_accuracy") else " |"
        print(f"| {row} | {float(end['student_accuracy']):.2%} |{weights if averaged else ''} "
              f"{float(best['student_accuracy']):.2%} at {float(best['time_s']):.0f} s | {ratio:.3f} | {end['step']} | "
              f"{float(end['time_s']):.0f} s |")


if __name__ == "__main__":
    main()
