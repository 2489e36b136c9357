"""benchmarks/keep_curves.sh: a run stopped by the command's time limit still leaves its last curve in $OUT."""
from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# A stand-in for a distill run: on SIGTERM it finishes its round, then writes its last evaluation, as distill does.
FAKE_RUN = """import pathlib, signal, sys, time
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
(pathlib.Path(sys.argv[1]) / "ready").touch()
while not stop:
    time.sleep(0.05)
time.sleep(0.5)
(pathlib.Path(sys.argv[1]) / "summary.csv").write_text("round,student_accuracy\\n1,0.5\\n")
"""

HEAD = """set -euo pipefail
source benchmarks/keep_curves.sh
keep_curve "$RUN/summary.csv" "$OUT/run_summary.csv"
"""
# As the benchmark scripts start their runs: in the foreground (zoo_pairs.sh), or in the background (any_teacher_128.sh).
STARTS = {"foreground": "$FAKE_RUN\n", "background": "$FAKE_RUN &\nwait $!\n"}


def _dirs(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "run").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "fake_run.py").write_text(FAKE_RUN)
    fake = f"{shlex.quote(sys.executable)} {shlex.quote(str(tmp_path / 'fake_run.py'))} {tmp_path / 'run'}"
    return {"PATH": "/usr/bin:/bin", "RUN": str(tmp_path / "run"), "OUT": str(tmp_path / "out"), "FAKE_RUN": fake}


@pytest.mark.parametrize("how", sorted(STARTS))
def test_a_run_stopped_by_the_time_limit_leaves_its_last_evaluation(tmp_path, how):
    env = _dirs(tmp_path)
    # timeout signals the whole process group, as on the GPU machine; the pipe would hang if a copier outlived it.
    done = subprocess.run(["timeout", "3", "bash", "-c", HEAD + STARTS[how]], cwd=REPO, capture_output=True,
                          text=True, env=env, timeout=60)
    assert (tmp_path / "run" / "ready").exists(), done.stderr
    assert done.returncode == 124, done.stderr  # stopped by the limit, not finished
    assert (tmp_path / "out" / "run_summary.csv").read_text() == "round,student_accuracy\n1,0.5\n"


def test_the_script_s_exit_copies_the_curves_once_more(tmp_path):
    env = _dirs(tmp_path)
    script = HEAD + 'echo 1 > "$RUN/summary.csv"\nstop_curves\necho 2 > "$RUN/summary.csv"\n'
    subprocess.run(["bash", "-c", script], cwd=REPO, check=True, timeout=60, env=env)
    assert (tmp_path / "out" / "run_summary.csv").read_text() == "2\n"  # whatever a run wrote last is in $OUT
