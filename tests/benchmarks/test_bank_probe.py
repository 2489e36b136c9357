"""benchmarks/bank_probe.py on a finished (tiny) distill run: one row per age group of its replay bank."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from test_cli import TINY, in_process

REPO = Path(__file__).resolve().parents[2]


def test_the_bank_of_a_finished_run_by_age(tmp_path, capsys):
    run = tmp_path / "run"
    proc = in_process(capsys, "distill", *TINY, "noise_baseline=false", "trainer.rounds=4", f"hydra.run.dir={run}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    done = subprocess.run([sys.executable, str(REPO / "benchmarks/bank_probe.py"), str(run), "--groups", "4",
                           "--device", "cpu"], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0].endswith("images in the bank, 4 groups by age (oldest first)")
    rows = [line.split("|")[1:-1] for line in lines[3:]]
    assert [int(r[0]) for r in rows] == [1, 2, 3, 4]
    for row in rows:  # confidence, top class share, agreement: shares; the BatchNorm distance: a finite number >= 0
        assert all(0.0 <= float(v) <= 1.0 for v in row[2:5]) and float(row[5]) >= 0
