"""The CLI as users run it: a tiny distillation and every bad input.

Subprocesses run the refusals that depend on the process (unknown command, no GPU, unwritable folders): the
contract (one line on stderr, exit status 2, nothing written) end to end. The rest runs in this process
(:func:`in_process`), the same code without an interpreter start-up each; the default demo in a subprocess,
as users run it, is tests/test_demos.py's.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from datafree.models import create_model
from datafree.teachers import ClassifierInfo, save_classifier
from recipe_keys import missing_keys

# A tiny but complete run: teacher trained first, DeepInversion, evaluation, noise baseline.
TINY = [
    "data.train.n=400", "data.test.n=200", "data.batch_size=64", "data.image_size=8",
    "teacher=tinycnn_shapes", "teacher.arch=microcnn", "teacher.train.epochs=1",
    "student=microcnn", "synthesizer.batch_size=16", "synthesizer.iterations=3",
    "trainer.rounds=2", "trainer.student_steps=2", "trainer.batch_size=16", "trainer.eval_every=1",
    "device=cpu", "progress=false",
]


def run_cli(*args, cwd=None, pythonpath=None):
    env = None
    if pythonpath:  # where the user's own modules live (teacher.model._target_)
        env = dict(os.environ, PYTHONPATH=pythonpath)
    return subprocess.run([sys.executable, "-m", "datafree", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300, env=env)


def run_in_process(capsys, *args) -> tuple[int, str, str]:
    """``datafree ARGS`` in this process (no interpreter start-up): exit status, stdout, stderr."""
    from datafree import cli

    try:
        code = cli.main(list(args))
    except SystemExit as stop:
        code = stop.code
    out, err = capsys.readouterr()
    return code, out, err


def in_process(capsys, *args) -> subprocess.CompletedProcess:
    """:func:`run_in_process` shaped like :func:`run_cli`'s result."""
    return subprocess.CompletedProcess(list(args), *run_in_process(capsys, *args))


def _info(arch="microcnn"):
    return ClassifierInfo(arch=arch, num_classes=10, input_size=(3, 8, 8), mean=(0.5,) * 3, std=(0.25,) * 3)


def test_tiny_distill_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    proc = in_process(capsys, "distill", *TINY, "noise_baseline=true", f"hydra.run.dir={out}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    for needle in ("teacher microcnn: test accuracy", "student microcnn: test accuracy", "random-noise images",
                   f"run folder: {out}", "student.pt ", "samples.png ", "summary.csv ", "tensorboard/ ",
                   "noise_baseline/ ", "state_last.pt "):
        assert needle in proc.stdout
    for name in ("teacher.pt", "student.pt", "samples.png", "summary.csv"):
        assert (out / name).is_file(), name
    assert torch.load(out / "student.pt", weights_only=True)["arch"] == "microcnn"
    # The teacher written by the run serves a second, checkpoint-based run.
    proc = in_process(capsys, "distill", *TINY, f"teacher.checkpoint={out / 'teacher.pt'}", f"hydra.run.dir={tmp_path / 'again'}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "training one first" not in proc.stdout and (tmp_path / "again" / "student.pt").is_file()


def test_train_teacher_trains_the_teacher_that_distill_trains(tmp_path, capsys):
    # In this process; train-teacher runs in subprocesses in test_cli_resume.py.
    out = tmp_path / "teacher"
    proc = in_process(capsys, "train-teacher", *[a for a in TINY if a.split(".")[0] in ("data", "teacher", "device", "progress")],
                   f"hydra.run.dir={out}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    blob = torch.load(out / "teacher.pt", weights_only=True)
    assert blob["arch"] == "microcnn" and blob["input_size"] == [3, 8, 8] and len(blob["classes"]) == 10
    assert 0 <= blob["test_accuracy"] <= 1
    log = (out / "train-teacher.log").read_text()
    assert "teacher written to" in log  # a run that logs keeps its log
    assert "has nothing to teach" not in log  # weak after one epoch, but not one class for every image: no warning
    # The teacher a distill run trains first (teacher.train_if_missing) from the same recipe: the same weights.
    proc = in_process(capsys, "distill", *TINY, "trainer.rounds=1", "noise_baseline=false",
                      f"hydra.run.dir={tmp_path / 'distill'}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    trained = torch.load(tmp_path / "distill" / "teacher.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(trained[k], v) for k, v in blob["state_dict"].items())


def test_help_and_unknown_command(capsys):
    proc = in_process(capsys)
    assert proc.returncode == 0 and "train-teacher" in proc.stdout
    proc = run_cli("distil")
    assert proc.returncode == 2 and "unknown command 'distil': did you mean distill?" in proc.stderr
    proc = in_process(capsys, "train_teacher")
    assert proc.returncode == 2 and "unknown command 'train_teacher': did you mean train-teacher?" in proc.stderr


def test_a_reader_that_leaves_the_pipe_stops_the_command_quietly():
    # datafree inspect SET | head: the reader closes the pipe before the command has written; a pipe's writer then
    # stops (status 128 + SIGPIPE), without a BrokenPipeError traceback
    proc = subprocess.Popen([sys.executable, "-m", "datafree", "help"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # before the interpreter has even imported datafree
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 141 and b"Traceback" not in stderr and b"BrokenPipe" not in stderr, stderr[-2000:]


def test_version(capsys):
    from importlib.metadata import version

    import datafree

    assert datafree.__version__ == version("datafree")  # the installed metadata reads datafree/version.py
    for flag in ("--version", "-V"):
        assert run_in_process(capsys, flag) == (0, f"datafree {datafree.__version__}\n", "")


def _assert_clean_failure(proc, out: Path, *needles):
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    for needle in needles:
        assert needle in proc.stderr, proc.stderr[-3000:]
    assert not out.exists(), f"left behind: {list(out.rglob('*'))}"


@pytest.mark.parametrize(
    "overrides, needles",
    [
        (["student.arch=resnet19"], ["unknown model 'resnet19'", "Did you mean 'resnet18'"]),
        (["teacher.arch=nope", "teacher.checkpoint=null"], ["unknown model 'nope'"]),
        (["synthesizer=deepinversionn"], ["synthesizer/deepinversionn", "Available options"]),
        (["data=tarball_missing"], ["data/tarball_missing"]),
        (["teacher.checkpoint=/no/such/teacher.pt"], ["does not exist", "teacher.checkpoint"]),
        (["synthesizer.tv_l2_weight=-1"], ["must be >= 0"]),
        # Checked before any work (datafree.config_checks, the CLI's pre-flight composition, resume):
        (["trainer.lrr=0.1"], ["trainer.lrr is not a key of the distill recipe: did you mean trainer.lr?", "--cfg job"]),
        (["studnt.name=resnet18"], ["studnt.name is not a key of the distill recipe: did you mean student.name?"]),
        # '+' adds a key: refused before any work where nothing takes it (the trainer refused it only after the
        # teacher was trained; +teacher.train.epochz was ignored), with the key it was meant to be
        (["+trainer.roundz=2"], ["unknown trainer option(s) ['roundz'] (trainer.roundz: did you mean trainer.rounds?)"]),
        (["+studnt.name=resnet18"], ["studnt.name is not a key of the distill recipe: did you mean student.name?"]),
        (["trainer.loss.temprature=2"], ["trainer.loss.temprature is not a key of the distill recipe: did you mean "
                                         "trainer.loss.temperature?"]),
        (["trainer.lr=[0.1"], ["cannot parse the override 'trainer.lr=[0.1'"]),
        (["trainer.lr=abc"], ["trainer.lr must be a number > 0, got 'abc' (str): set e.g. trainer.lr=0.1."]),
        (["trainer.batch_size=-4"], ["trainer.batch_size must be auto or an int >= 1, got -4"]),
        (["data.num_classes=0"], ["data.num_classes must be auto, null or an int >= 2, got 0"]),
        (["trainer.replay=1.5"], ["trainer.replay must be a number in [0, 1], got 1.5"]),
        (["data.image_size=4"], ["data.image_size must be auto, null or an int >= 8, got 4"]),
        (["trainer.time_budget_s=-5"], ["trainer.time_budget_s must be null or a number > 0"]),
        (["seed=abc"], ["seed must be an int >= 0, got 'abc'"]),
        (["amp=maybe"], ["amp must be true or false, got 'maybe'"]),
        (["trainer.max_nonfinite=0"], ["trainer.max_nonfinite must be an int >= 1"]),
        (["trainer.warmup_steps=-1"], ["trainer.warmup_steps must be an int >= 0, got -1", "trainer.warmup_steps=200"]),
        (["trainer.bn_momentum=0.99x"], ["trainer.bn_momentum must be auto, keep or a number in (0, 1], got '0.99x'",
                                          "trainer.bn_momentum=0.1"]),
        (["trainer.bn_momentum=2"], ["trainer.bn_momentum must be auto, keep or a number in (0, 1], got 2"]),
        (["device=tpu"], ["device must be auto, cpu, cuda or cuda:N, got 'tpu'"]),
        (["trainer.optimizer=lion"], ["trainer.optimizer must be 'sgd' or 'adam', got 'lion'"]),
        (["synthesizer.iterations=0"], ["synthesizer.iterations must be an int >= 1"]),
        (["trainer.discriminator.every=0"], ["trainer.discriminator.every must be an int >= 1, got 0"]),
        (["trainer.similarity.weight=1", "trainer.similarity.teacher_layers=[features.2]",
          "trainer.similarity.student_layers=[features.99]"], ["student layer(s) ['features.99'] not found in"]),
        (["resume=true"], ["resume=true but", "does not exist: point resume at the run directory"]),
        (["resume=/no/such/run"], ["resume=/no/such/run but the run directory is", "give only resume=RUN_DIR"]),
    ],
)
def test_bad_input_fails_cleanly(tmp_path, capsys, overrides, needles):
    # In this process: the same code as the command, without an interpreter start-up per case.
    out = tmp_path / "run"
    proc = in_process(capsys, "distill", *TINY, *overrides, f"hydra.run.dir={out}")
    _assert_clean_failure(proc, out, *needles)
    stderr = proc.stderr
    assert stderr.count("\n") == 1, stderr
    unknown_key = ("cannot parse", "Could not find", "is not a key of", "unknown trainer option")  # names a key not there
    if not any(phrase in stderr for phrase in unknown_key):
        assert not missing_keys(stderr, "distill", [*TINY, *overrides]), stderr


@pytest.mark.parametrize("held", [["notes.txt"], []])
def test_a_refused_run_in_the_users_own_folder_leaves_it_as_it_was(tmp_path, capsys, held):
    # refused inside the job, after hydra wrote its record: the record went, the folder stays (an empty one was removed,
    # one holding the user's files kept .hydra/)
    out = tmp_path / "mine"
    out.mkdir()
    for name in held:
        (out / name).write_text("the user's")
    proc = in_process(capsys, "distill", *TINY, "student.arch=resnet19", f"hydra.run.dir={out}")
    assert proc.returncode == 2 and "unknown model 'resnet19'" in proc.stderr
    assert sorted(p.name for p in out.iterdir()) == held


def test_gpu_asked_for_without_one_fails_cleanly(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    out = tmp_path / "run"
    proc = run_cli("distill", *TINY[:-2], "device=cuda", "progress=false", f"hydra.run.dir={out}")
    _assert_clean_failure(proc, out, "no CUDA GPU is visible", "device=cpu")


@pytest.mark.parametrize("override, needle", [
    ("teacher.train.epochs=0", "teacher.train.epochs must be an int >= 1, got 0"),
    ("teacher.train.bn_momentum=fast", "teacher.train.bn_momentum must be auto, keep or a number in (0, 1], got 'fast'"),
    # was ignored: 200 epochs trained
    ("+teacher.train.epochz=3", "teacher.train.epochz is not a key of the train-teacher recipe: did you mean "
                                "teacher.train.epochs?"),
])
def test_bad_teacher_training_setting_fails_cleanly(tmp_path, capsys, override, needle):
    out = tmp_path / "run"
    proc = in_process(capsys, "train-teacher", override, "device=cpu", f"hydra.run.dir={out}")
    _assert_clean_failure(proc, out, needle)


def test_corrupt_teacher_checkpoint_fails_cleanly(tmp_path, capsys):
    bad = tmp_path / "teacher.pt"
    bad.write_bytes(b"PK\x03\x04 not really a checkpoint")
    out = tmp_path / "run"
    proc = in_process(capsys, "distill", *TINY, f"teacher.checkpoint={bad}", f"hydra.run.dir={out}")
    _assert_clean_failure(proc, out, "cannot be read", "damaged or not a PyTorch checkpoint")


def test_unwritable_output_dir_is_refused_before_work(tmp_path):
    read_only = tmp_path / "read_only"
    read_only.mkdir()
    read_only.chmod(0o555)
    try:
        if os.access(read_only, os.W_OK):
            # Running as root: permission bits do not stop root, so block the path with a file instead
            # (the read-only case itself is covered in-process below).
            blocker = tmp_path / "a_file"
            blocker.write_text("x")
            out, needle = blocker / "run", "is a file, not a folder"
        else:
            out, needle = read_only / "run", "is read-only for this user"
        proc = run_cli("distill", *TINY, f"hydra.run.dir={out}")
        _assert_clean_failure(proc, out, needle, "hydra.run.dir")
        assert proc.stdout == ""  # not even the teacher was trained
    finally:
        read_only.chmod(0o755)


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc, where nobody can create folders")
def test_output_dir_that_even_root_cannot_create_is_refused(tmp_path):
    out = Path("/proc/datafree_run")  # permission bits allow root everything; /proc refuses anyway
    proc = run_cli("distill", *TINY, f"hydra.run.dir={out}")
    _assert_clean_failure(proc, out, f"the run directory {out} cannot be written", "hydra.run.dir")
    assert proc.stdout == ""


def test_read_only_output_dir_is_refused_in_process(tmp_path, monkeypatch, capsys):
    from datafree import cli

    real_access = os.access
    monkeypatch.setattr(cli.os, "access", lambda path, mode: False if str(path) == str(tmp_path) else real_access(path, mode))
    assert cli.main(["distill", *TINY, f"hydra.run.dir={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{tmp_path} is read-only for this user" in err
    assert not (tmp_path / "run").exists()


def test_missing_data_path_fails_cleanly(tmp_path, capsys):
    out = tmp_path / "run"
    args = [a for a in TINY if not a.startswith("data.")]
    proc = in_process(capsys, "distill", *args, "data=cifar10_jpeg", "data.root=/no/such/folder", f"hydra.run.dir={out}")
    _assert_clean_failure(proc, out, "/no/such/folder", "does not exist")


def test_teacher_without_batchnorm_fails_cleanly(tmp_path, capsys):
    ckpt = save_classifier(tmp_path / "t.pt", create_model("nobn_cnn", num_classes=10), _info("nobn_cnn"))
    out = tmp_path / "run"
    proc = in_process(capsys, "distill", *TINY, f"teacher.checkpoint={ckpt}", "teacher.arch=nobn_cnn", f"hydra.run.dir={out}")
    _assert_clean_failure(proc, out, "no BatchNorm layer", "synthesizer=images synthesizer.path=DIR")


def test_a_run_too_large_for_the_cpus_memory_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    # On the CPU the kernel kills a process out of memory without a message (the README's 224-px pair on a small
    # machine): the run's batches are priced first, and one line names the keys to lower
    from datafree.distill import preflight

    monkeypatch.setattr(preflight, "available_memory", lambda: 4096)
    ckpt = save_classifier(tmp_path / "t.pt", create_model("microcnn", num_classes=10), _info())
    out = tmp_path / "run"
    proc = in_process(capsys, "distill", *TINY, f"teacher.checkpoint={ckpt}", f"hydra.run.dir={out}")
    _assert_clean_failure(proc, out, "needs at least", "is available",
                          "synthesizer.batch_size=16 keeps", "trainer.batch_size=16", "killed without a word")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1


def test_a_teacher_batch_too_large_for_the_cpus_memory_is_refused_before_training(tmp_path, capsys, monkeypatch):
    from datafree.distill import preflight

    monkeypatch.setattr(preflight, "available_memory", lambda: 4096)
    out = tmp_path / "teacher"
    proc = in_process(capsys, "train-teacher", *[a for a in TINY if a.split(".")[0] in ("data", "teacher", "device", "progress")],
                      f"hydra.run.dir={out}")
    _assert_clean_failure(proc, out, "needs at least", "a training step at data.batch_size=64", "killed without a word")
    assert "trainer." not in proc.stderr and "synthesis" not in proc.stderr
