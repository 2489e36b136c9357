"""benchmarks/runs.sh: runs started by the benchmark scripts, and a run stopped by the command's time limit still
leaving its last curve in $OUT."""
from __future__ import annotations

import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# A stand-in for a distill run: on SIGTERM it finishes its round, then writes its last evaluation, as distill does.
FAKE_RUN = """import pathlib, signal, sys, time
run = pathlib.Path(sys.argv[1])
run.mkdir(exist_ok=True)
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
(run / "ready").touch()
while not stop:
    time.sleep(0.05)
time.sleep(0.5)
(run / "summary.csv").write_text("round,student_accuracy\\n1,0.5\\n")
"""
LAST = "round,student_accuracy\n1,0.5\n"

# As the benchmark scripts start their runs: in the foreground with its curve kept (cifar10_distill.sh), one after the
# other (start_run), or side by side (SIDE_BY_SIDE=1).
SCRIPTS = {
    "foreground": 'keep_curve "$RUN/a/summary.csv" "$OUT/a.csv"\n$FAKE_RUN "$RUN/a"\n',
    "start_run": 'start_run "$RUN/a/summary.csv" "$OUT/a.csv" "$OUT/a.log" $FAKE_RUN "$RUN/a"\nwait_runs\n',
    "side_by_side": ('SIDE_BY_SIDE=1\n'
                     'start_run "$RUN/a/summary.csv" "$OUT/a.csv" "$OUT/a.log" $FAKE_RUN "$RUN/a"\n'
                     'start_run "$RUN/b/summary.csv" "$OUT/b.csv" "$OUT/b.log" $FAKE_RUN "$RUN/b"\nwait_runs\n'),
}


def _run(tmp_path: Path, body: str, timeout: str | None = None) -> subprocess.CompletedProcess:
    (tmp_path / "run").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "fake_run.py").write_text(FAKE_RUN)
    env = {"PATH": "/usr/bin:/bin", "RUN": str(tmp_path / "run"), "OUT": str(tmp_path / "out"),
           "FAKE_RUN": f"{shlex.quote(sys.executable)} {shlex.quote(str(tmp_path / 'fake_run.py'))}"}
    command = ["bash", "-c", "set -euo pipefail\nsource benchmarks/runs.sh\n" + body]
    # timeout signals the whole process group, as on the GPU machine; the pipe would hang if a copier outlived it.
    return subprocess.run((["timeout", timeout] if timeout else []) + command, cwd=REPO, capture_output=True,
                          text=True, env=env, timeout=60)


@pytest.mark.parametrize("how", sorted(SCRIPTS))
def test_a_run_stopped_by_the_time_limit_leaves_its_last_evaluation(tmp_path, how):
    done = _run(tmp_path, SCRIPTS[how], timeout="6")  # time for two runs to start on a busy 2-core machine
    names = ["a", "b"] if how == "side_by_side" else ["a"]
    for name in names:
        assert (tmp_path / "run" / name / "ready").exists(), done.stderr
    assert done.returncode == 124, done.stderr  # stopped by the limit, not finished
    for name in names:
        assert (tmp_path / "out" / f"{name}.csv").read_text() == LAST


def test_runs_one_after_the_other_by_default(tmp_path):
    body = ('start_run "$RUN/a/s" "$OUT/a.csv" "$OUT/a.log" bash -c \'echo a >> "$OUT/order"; sleep 1; echo a >> "$OUT/order"\'\n'
            'start_run "$RUN/b/s" "$OUT/b.csv" "$OUT/b.log" bash -c \'echo b >> "$OUT/order"\'\nwait_runs\n')
    start = time.monotonic()
    done = _run(tmp_path, body)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "order").read_text().split() == ["a", "a", "b"]
    assert time.monotonic() - start < 10  # no copier (nor its sleep, 15 s) held the output pipe open


def test_the_script_s_exit_copies_the_curves_once_more(tmp_path):
    body = ('mkdir -p "$RUN/a"; keep_curve "$RUN/a/summary.csv" "$OUT/a.csv"\n'
            'echo 1 > "$RUN/a/summary.csv"\nstop_curves\necho 2 > "$RUN/a/summary.csv"\n')
    done = _run(tmp_path, body)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "a.csv").read_text() == "2\n"  # whatever a run wrote last is in $OUT


@pytest.mark.parametrize("log, finished", [
    ("[...] round 10 step 200: student 0.1838 teacher 0.7961\nstudent torchvision:resnet18: test accuracy 78.13% "
     "(agreement with teacher 88.75%) after 44032 synthetic images, 367s, stopped by time budget\n", True),
    ("[...] round 130 step 2600: student 0.7418 teacher 0.7961\ndatafree: interrupted: stopped by SIGTERM after "
     "student step 2741 (round 138): full state saved\n", False),
])
def test_a_run_is_finished_only_when_its_log_ends_it(tmp_path, log, finished):
    (tmp_path / "distill.log").write_text(log)
    done = _run(tmp_path, 'run_finished "$RUN/../distill.log"\n')
    assert (done.returncode == 0) is finished, done.stderr
