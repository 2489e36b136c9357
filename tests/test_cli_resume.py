"""SIGTERM in a subprocess at random steps, resume, and the same weights bit for bit (CPU).

The interrupted runs are subprocesses (the signal is real); the uninterrupted reference, the last resume
and the refusals run in this process, without an interpreter start-up each: the same code, the same kernels.
"""
import random
import subprocess
import sys

import pytest
import torch

from test_cli import TINY, in_process

# The CLI with one patch: the process sends itself SIGTERM during the N-th student (or teacher) step.
# The signal and its handling are real; only the moment is chosen, so that the test hits chosen steps.
KILLER = """
import os, signal, sys
import torch.nn.functional as F
from datafree.distill import trainer
from datafree.cli import main

kind, at = sys.argv[1], int(sys.argv[2])
calls = [0]

def tick():
    calls[0] += 1
    if calls[0] == at:
        os.kill(os.getpid(), signal.SIGTERM)

if kind == "distill":
    step = trainer.Distiller._step
    def student_step(self, *batch):
        tick()
        return step(self, *batch)
    trainer.Distiller._step = student_step
else:
    cross_entropy = F.cross_entropy
    def counted(*args, **kwargs):
        tick()
        return cross_entropy(*args, **kwargs)
    F.cross_entropy = counted
sys.exit(main(sys.argv[3:]))
"""

DISTILL = [a for a in TINY if not a.startswith("trainer.")] + [
    "trainer.rounds=4", "trainer.student_steps=3", "trainer.batch_size=16", "trainer.eval_every=2",
    "trainer.log_every=2", "trainer.checkpoint_every=5", "noise_baseline=false",
]
TEACHER = [a for a in TINY if a.split(".")[0] in ("data", "teacher", "device", "progress")] + [
    "teacher.train.epochs=2", "teacher.train.checkpoint_every=3"]


def run_killed(kind, at, *args):
    return subprocess.run([sys.executable, "-c", KILLER, kind, str(at), kind, *args], capture_output=True, text=True,
                          timeout=300)


def _student(path):
    return torch.load(path, weights_only=True)["state_dict"]


def _interrupt_and_resume(tmp_path, capsys, command, args, total_steps, checkpoint, last_alone=False):
    """``last_alone``: the last resume is ``resume=RUN_DIR`` and nothing else (the run's own settings fill in)."""
    reference = tmp_path / "reference"
    proc = in_process(capsys, command, *args, f"hydra.run.dir={reference}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    expected = _student(reference / checkpoint)

    steps = sorted(random.Random(len(args)).sample(range(1, total_steps), 3))
    run = tmp_path / "run"
    done = 0
    for n, at in enumerate(steps):
        # The first run is new; then resume=RUN_DIR, and last resume=true with hydra.run.dir.
        resume = [] if n == 0 else [f"resume={run}"]
        proc = run_killed(command, at - done, *args, *resume, f"hydra.run.dir={run}" if n == 0 else "progress=false")
        assert proc.returncode == 143, (steps, proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr
        assert f"interrupted: stopped by SIGTERM after {'student ' if command == 'distill' else ''}step {at} " in proc.stderr
        assert "resume=true" in proc.stderr and (run / "state_last.pt").is_file()
        done = at
    last = [f"resume={run}"] if last_alone else [*args, "resume=true", f"hydra.run.dir={run}"]
    proc = in_process(capsys, command, *last)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = _student(run / checkpoint)
    assert got.keys() == expected.keys()
    for name in expected:
        assert torch.equal(got[name], expected[name]), (steps, name)
    return run


@pytest.mark.long(20)
def test_distill_interrupted_at_random_steps_resumes_bitwise(tmp_path, capsys):
    # The teacher is trained inside the run: its state is reused on resume, not trained again.
    run = _interrupt_and_resume(tmp_path, capsys, "distill", DISTILL, 12, "student.pt")
    assert (run / "teacher" / "state_last.pt").is_file() and (run / ".hydra").is_dir()
    assert sorted(p.name for p in (run / ".hydra").iterdir() if p.name.startswith("resumed_"))
    # A resume may run longer, but nothing else may change.
    proc = in_process(capsys, "distill", *DISTILL, f"resume={run}", "trainer.lr=0.2")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "differs from the checkpoint's in trainer.lr: 0.05 -> 0.2" in proc.stderr
    # The same run directory without resume would overwrite a run: refused.
    proc = in_process(capsys, "distill", *DISTILL, f"hydra.run.dir={run}")
    assert proc.returncode == 2 and "already holds the saved state" in proc.stderr and "resume=true" in proc.stderr
    assert (run / "student.pt").is_file()
    # Another command's resume is told the command, not the first run's settings its recipe lacks ("Could not
    # override 'trainer.rounds'"); the state file for its folder is told the folder.
    proc = in_process(capsys, "train-teacher", f"resume={run}")
    assert proc.returncode == 2 and f"holds a distill run, not a train-teacher run: continue it with datafree distill " \
        f"resume={run}" in proc.stderr
    proc = in_process(capsys, "distill", f"resume={run / 'state_last.pt'}")
    assert proc.returncode == 2 and f"names a file: give the run's folder, resume={run}." in proc.stderr


@pytest.mark.long(18)
def test_train_teacher_interrupted_at_random_steps_resumes_bitwise(tmp_path, capsys):
    # 400 images / batch 64 = 6 steps per epoch, 2 epochs. The last resume gives resume=RUN_DIR alone: the settings
    # the run was started with come from its .hydra record; one given again that differs is still refused.
    run = _interrupt_and_resume(tmp_path, capsys, "train-teacher", TEACHER, 12, "teacher.pt", last_alone=True)
    proc = in_process(capsys, "train-teacher", f"resume={run}", "teacher.train.lr=0.5")
    assert proc.returncode == 2 and "differs from the checkpoint's in teacher.train.lr: 0.05 -> 0.5" in proc.stderr
    proc = in_process(capsys, "train-teacher", f"resume={run}", "teacher.train.epochs=3")  # a longer run: allowed
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "epoch 3/3" in (run / "train-teacher.log").read_text()
    proc = in_process(capsys, "distill", f"resume={run}")  # another command's run: named, not a list of differences
    assert proc.returncode == 2 and (f"holds a train-teacher run, not a distill run: continue it with datafree "
                                     f"train-teacher resume={run}") in proc.stderr


@pytest.mark.long(20)
def test_the_fast_recipe_interrupted_at_random_steps_resumes_bitwise(tmp_path, capsys, shapes_teacher_path):
    # experiment=fast as the GPU benchmarks run it in pieces (benchmarks/resumable_distill.sh): the bank sized by
    # trainer.pool_capacity=auto, the batches by the device (auto: 32 and 64 on the CPU; the resumed recipe's auto
    # against the saved state's numbers), the student's warm-up, the relative BatchNorm prior, the running average.
    args = ["experiment=fast", f"teacher.checkpoint={shapes_teacher_path}", "student=microcnn", "device=cpu",
            "progress=false", "synthesizer.g_steps=2", "synthesizer.base_width=4",
            "synthesizer.latent_dim=8", "trainer.rounds=6", "trainer.student_steps=3",
            "trainer.eval_every=2", "trainer.log_every=2", "trainer.warmup_steps=5", "trainer.time_budget_s=null",
            "trainer.ema_decay=0.9"]
    _interrupt_and_resume(tmp_path, capsys, "distill", args, 18, "student.pt")
