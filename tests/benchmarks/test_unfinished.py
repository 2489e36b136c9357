"""benchmarks/unfinished.sh: the CPU demo sweeps run only the seed x variant runs whose log lacks the student's line."""
from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_only_runs_without_the_students_line_are_left(tmp_path):
    (tmp_path / "base_s0.log").write_text("teacher x: test accuracy 90%\nstudent y: test accuracy 80%\n")
    (tmp_path / "base_s1.log").write_text("round 3 step 60\n")  # stopped before its end
    (tmp_path / "div1_s1.log").write_text("student y: test accuracy 70%\n")
    variants = ["base ln synthesizer.bn_weight=0", "div1 ln +synthesizer.div_weight=1"]
    script = (f"source {shlex.quote(str(REPO / 'benchmarks/unfinished.sh'))}; "
              f"unfinished {shlex.quote(str(tmp_path))} '0 1' " + " ".join(shlex.quote(v) for v in variants))
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["0 div1 ln +synthesizer.div_weight=1", "1 base ln synthesizer.bn_weight=0"]
