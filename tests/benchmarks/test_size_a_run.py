"""benchmarks/size_a_run.py prices a round on the CPU too: the machine a user sizes a run on may have no GPU."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_a_round_is_priced_on_the_cpu():
    done = subprocess.run([sys.executable, str(REPO / "benchmarks/size_a_run.py"), "--teacher", "resnet18", "--student",
                           "microcnn", "--size", "16", "--batch", "4", "--g-steps", "1", "--student-steps", "1", "--reps",
                           "1", "--device", "cpu"], capture_output=True, text=True, cwd=REPO / "benchmarks")
    assert done.returncode == 0, done.stderr[-2000:]
    header, columns, row = done.stdout.splitlines()
    assert header.startswith("device: CPU (") and header.endswith("float32 (as distill runs on the CPU)")
    assert columns.split()[:2] == ["batch", "generator"]
    values = row.split()
    assert values[0] == "4" and len(values) == 8 and all(float(v) > 0 for v in values)  # set-up and first steps too
