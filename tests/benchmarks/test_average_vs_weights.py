"""benchmarks/average_vs_weights.py: the average minus the weights at each run's last evaluation, runs ordered by
their student steps, runs that never averaged left out."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HEADER = "round,step,images,time_s,student_accuracy,unaveraged_accuracy,teacher_accuracy\n"


def test_the_last_evaluation_of_each_averaged_run_by_steps(tmp_path):
    (tmp_path / "long").mkdir()
    (tmp_path / "long" / "a_summary.csv").write_text(HEADER + "1,100,10,5,0.9,0.5,0.95\n2,9000,20,600,0.88,0.84,0.95\n")
    (tmp_path / "b_summary.csv").write_text(HEADER + "1,3490,10,360,0.7653,0.7702,0.8097\n")
    (tmp_path / "plain_summary.csv").write_text("round,step,time_s,student_accuracy\n1,50,3,0.5\n")  # no average
    done = subprocess.run([sys.executable, str(REPO / "benchmarks/average_vs_weights.py"), str(tmp_path)],
                          capture_output=True, text=True, check=True)
    assert done.stdout.splitlines()[1:] == [" -0.49 |   3490 |    360 | b_summary.csv",
                                            " +4.00 |   9000 |    600 | long/a_summary.csv"]
