"""benchmarks/bn_recalibration.py on a finished (tiny) distill run with the average: each student as saved, and
with its BatchNorm statistics re-estimated on the run's bank."""
from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

from test_cli import TINY, in_process

REPO = Path(__file__).resolve().parents[2]


def test_the_saved_students_score_what_the_run_measured(tmp_path, capsys):
    run = tmp_path / "run"
    proc = in_process(capsys, "distill", *TINY, "noise_baseline=false", "trainer.rounds=4", "trainer.ema_decay=0.5",
                      f"hydra.run.dir={run}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    done = subprocess.run([sys.executable, str(REPO / "benchmarks/bn_recalibration.py"), str(run), "--batches", "3",
                           "--batch", "16", "--device", "cpu"], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {line.split("|")[1].strip(): [float(v.strip().rstrip("%")) for v in line.split("|")[2:4]]
            for line in done.stdout.splitlines()[3:]}
    last = list(csv.DictReader((run / "summary.csv").open()))[-1]
    # As saved, each is the student the run's last evaluation measured (the same test split, read again); the table
    # prints percent to 2 decimals, summary.csv fractions to 4
    assert abs(rows["the weights (state_last.pt)"][0] - 100 * float(last["unaveraged_accuracy"])) < 0.006
    assert abs(rows["their average (student.pt)"][0] - 100 * float(last["student_accuracy"])) < 0.006
    assert all(0.0 <= v <= 100.0 for row in rows.values() for v in row)
