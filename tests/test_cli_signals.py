"""SIGTERM / SIGINT outside the loops' own handling: before the job, during it, after it; one line each.

The loops' own handling (save, then exit 128 + signal) is tests/test_cli_resume.py's. Here the CLI runs in a
subprocess as users run it (``main()`` without arguments, as the console script calls it), with one function
wrapped to send the real signal at a chosen moment.
"""
import json
import signal
import subprocess
import sys

import pytest

SENDER = """
import importlib, os, signal, sys
module, function, signum = sys.argv[1], sys.argv[2], getattr(signal, sys.argv[3])
owner = importlib.import_module(module)
real = getattr(owner, function)

def wrapped(*args, **kwargs):
    os.kill(os.getpid(), signum)
    return real(*args, **kwargs)

setattr(owner, function, wrapped)
from datafree.cli import main
sys.argv = ["datafree", *sys.argv[4:]]
sys.exit(main())
"""
TEACHER = ["data.train.n=200", "data.test.n=100", "data.batch_size=50", "data.image_size=8", "teacher=tinycnn_shapes",
           "teacher.arch=microcnn", "teacher.train.epochs=1", "device=cpu", "progress=false"]


def _send(where: str, signame: str, *args) -> subprocess.CompletedProcess:
    module, function = where.rsplit(".", 1)
    return subprocess.run([sys.executable, "-c", SENDER, module, function, signame, *args], capture_output=True,
                          text=True, timeout=300)


def test_a_signal_after_the_set_is_complete_is_named_and_exits_0(tmp_path, shapes_teacher_path):
    # dist.shutdown runs after the job has returned and printed its summary.
    proc = _send("datafree.utils.dist.shutdown", "SIGTERM", "synthesize", f"teacher.checkpoint={shapes_teacher_path}",
                 "n=20", "shard_size=10", "class_counts=as_drawn", "synthesizer.batch_size=10", "synthesizer.iterations=2", "device=cpu",
                 "progress=false", f"out={tmp_path / 'set'}", f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 0, proc.stderr
    assert "synthetic data set: 20 samples" in proc.stdout
    assert proc.stderr == ("datafree: SIGTERM arrived after the run had finished: nothing was interrupted, its outputs "
                           "are complete.\n")
    assert json.loads((tmp_path / "set" / "manifest.json").read_text())["complete"]


@pytest.mark.parametrize("where, signame, line", [
    # Before hydra starts the job: it is not started, and the run folder hydra made is removed again.
    ("datafree.cli._preflight", "SIGINT", "datafree: interrupted: stopped by SIGINT before the run started: nothing "
                                          "was written.\n"),
    # In the job, before any loop: it stops at once (no loop would see the request).
    ("datafree.jobs.check_trainable", "SIGTERM", "datafree: interrupted: stopped by SIGTERM before the run finished: "
                                                 "run the same command again.\n"),
])
def test_a_signal_outside_the_loops_stops_with_one_line_and_leaves_nothing(tmp_path, where, signame, line):
    proc = _send(where, signame, "train-teacher", *TEACHER, f"hydra.run.dir={tmp_path / 'runs' / 'run'}")
    assert proc.returncode == 128 + getattr(signal, signame), proc.stderr
    assert proc.stderr == line
    assert not (tmp_path / "runs").exists()
