"""datafree synthesize as users run it: killed at random points and started again, and its refusals."""
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from hydra import compose, initialize_config_module

from datafree import jobs
from datafree.errors import DatafreeError
from datafree.export import SyntheticSet

# DeepInversion on the 8x8 shapes teacher: about three seconds of synthesis on one core, ten shards.
RECIPE = ["n=200", "shard_size=20", "class_counts=as_drawn", "synthesizer.batch_size=24", "synthesizer.iterations=60",
          "device=cpu", "progress=false"]


def _cli(*args, **kwargs):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "datafree", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, **kwargs)


def _uninterrupted(overrides, out, run_dir):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the subprocesses: the same kernels, the same bytes
    try:
        with initialize_config_module("datafree.recipes", version_base="1.3"):
            cfg = compose("synthesize", overrides=[*overrides, f"out={out}"])
        jobs.synthesize_job(cfg, run_dir)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.long(25)
def test_killed_at_random_points_and_continued_gives_the_uninterrupted_set(tmp_path, shapes_teacher_path):
    overrides = [*RECIPE, f"teacher.checkpoint={shapes_teacher_path}"]
    out = tmp_path / "set"
    rng = random.Random(0)
    kills = [signal.SIGTERM, signal.SIGKILL, signal.SIGTERM]
    for number, sig in enumerate(kills):
        proc = _cli("synthesize", *overrides, f"out={out}", f"hydra.run.dir={tmp_path / f'run{number}'}")
        deadline = time.time() + 120
        while not (out / "manifest.json").exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 1.0))
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=120)
        if sig == signal.SIGTERM and proc.returncode == 143:
            assert "stopped by SIGTERM after" in stderr and "run the same command to continue" in stderr, stderr
        else:
            assert proc.returncode in (0, -signal.SIGKILL, -signal.SIGTERM, 143), stderr[-2000:]
    proc = _cli("synthesize", *overrides, f"out={out}", f"hydra.run.dir={tmp_path / 'last'}")
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-2000:]
    synthetic = SyntheticSet(out)
    samples = synthetic.load()
    assert synthetic.complete and len(samples) == 200 and samples.indices.tolist() == list(range(200))
    assert synthetic.verify() == [] and not (out / ".resume").exists()

    _uninterrupted(overrides, tmp_path / "whole", tmp_path / "whole_run")
    for name in sorted(p.name for p in (tmp_path / "whole").glob("shard_*.pt")):
        assert (out / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name
    assert json.loads((out / "manifest.json").read_text())["count"] == 200

    # The owner audits the set; the teacher is the one its manifest names.
    with initialize_config_module("datafree.recipes", version_base="1.3"):
        cfg = compose("audit", overrides=[f"synthetic={out}", "data.image_size=8", "data.train.n=300", "data.test.n=100",
                                          "device=cpu"])
    jobs.audit_job(cfg, tmp_path / "audit")
    assert json.loads((tmp_path / "audit" / "audit.json").read_text())["teacher"]["matches_synthetic_set"]


def test_bad_input_is_one_line_and_writes_nothing(tmp_path, shapes_teacher_path):
    out, run = tmp_path / "set", tmp_path / "run"
    proc = _cli("synthesize", "n=10", "class_counts={disc: 3}", "device=cpu", f"teacher.checkpoint={shapes_teacher_path}",
                f"out={out}", f"hydra.run.dir={run}")
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "Traceback" not in stderr, stderr[-2000:]
    assert stderr.strip() == "datafree: error: class_counts add up to 3 but n=10: make them sum to n, or set n=3."
    assert not out.exists() and not run.exists()


@pytest.mark.parametrize("overrides, needle", [
    (["n=0"], "n must be an int >= 1"),
    (["class_counts={cat: 10}"], "unknown classes ['cat']"),
    (["draw=sample"], "draw=sample needs a synthesizer that draws images without a synthesis round"),
    (["teacher.checkpoint=null"], "synthesize needs a trained teacher"),
    (["from_run=/no/such/run"], "from_run=/no/such/run does not exist"),
])
def test_recipe_mistakes_are_refused_before_the_folder_is_made(tmp_path, shapes_teacher_path, overrides, needle):
    with initialize_config_module("datafree.recipes", version_base="1.3"):
        cfg = compose("synthesize", overrides=["n=10", "device=cpu", f"teacher.checkpoint={shapes_teacher_path}",
                                               f"out={tmp_path / 'set'}", *overrides])
    with pytest.raises(DatafreeError) as error:
        jobs.synthesize_job(cfg, tmp_path / "run")
    assert needle in str(error.value)
    assert not (tmp_path / "set").exists()


def test_from_run_without_the_runs_recipe_names_the_settings_the_run_was_started_with(tmp_path):
    """synthesize from_run=RUN alone (as the docs' from_run= reads) met 'synthesize needs a trained teacher ... the
    teacher.pt of a distill run': the run's recipe is not read, and the line now gives the settings that built it."""
    run = tmp_path / "distill"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "hydra.yaml").write_text("hydra:\n  job:\n    config_name: distill\n")
    (run / ".hydra" / "overrides.yaml").write_text(
        "- experiment=fast\n- teacher.checkpoint=t.pt\n- student=torchvision\n- student.name=mobilenet_v3_small\n"
        "- data=imagefolder\n- trainer.time_budget_s=6\n")
    with initialize_config_module("datafree.recipes", version_base="1.3"):
        cfg = compose("synthesize", overrides=["n=10", "device=cpu", f"from_run={run}", f"out={tmp_path / 'set'}"])
    with pytest.raises(DatafreeError) as error:
        jobs.synthesize_job(cfg, tmp_path / "run")
    assert str(error.value) == (
        f"from_run={run} takes the run's trained generator and student, not its recipe: give the run's teacher, "
        "student and synthesizer as well (the run was started with experiment=fast teacher.checkpoint=t.pt "
        "student=torchvision student.name=mobilenet_v3_small data=imagefolder).")
    assert not (tmp_path / "set").exists()


def test_from_run_alone_builds_the_runs_teacher_student_and_synthesizer(tmp_path, capsys, monkeypatch,
                                                                         shapes_teacher_path):
    """synthesize from_run=RUN takes the settings the run was started with (its teacher, student, synthesizer and
    data), their relative paths read from the folder it was started in, and leaves out what its recipe lacks."""
    from test_cli import in_process

    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir(), elsewhere.mkdir()
    shutil.copy(shapes_teacher_path, project / "teacher.pt")
    monkeypatch.chdir(project)
    proc = in_process(capsys, "distill", "teacher=checkpoint", "teacher.checkpoint=teacher.pt", "data.test.n=100",
                      "data.image_size=8", "student=microcnn", "synthesizer=dfad_demo", "trainer.rounds=2",
                      "trainer.student_steps=2", "trainer.batch_size=16", "device=cpu", "progress=false",
                      "noise_baseline=false", "hydra.run.dir=run")
    assert proc.returncode == 0, proc.stderr[-2000:]
    monkeypatch.chdir(elsewhere)
    proc = in_process(capsys, "synthesize", f"from_run={project / 'run'}", "n=20", "class_counts=as_drawn", "out=set",
                      "device=cpu", "progress=false", "synthesizer.batch_size=10")  # a key given again is the command's
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (f"from_run={project / 'run'}: with the run's own settings teacher=checkpoint "
            f"teacher.checkpoint={project / 'teacher.pt'} data.image_size=8 student=microcnn synthesizer=dfad_demo "
            "(not data.test.n=100: not a key of synthesize's recipe)") in proc.stdout
    recipe = SyntheticSet(elsewhere / "set").manifest["recipe"]
    assert recipe["teacher"]["checkpoint"] == str(project / "teacher.pt") and recipe["synthesizer"]["batch_size"] == 10
    assert recipe["synthesizer"]["_target_"] == "datafree.synthesizers.GeneratorSynthesizer"  # DFAD's, not the default


def test_a_synthesis_batch_too_large_for_the_cpus_memory_is_refused_before_the_folder_is_made(
        tmp_path, shapes_teacher_path, monkeypatch):
    from datafree.distill import preflight

    monkeypatch.setattr(preflight, "available_memory", lambda: 4096)
    with initialize_config_module("datafree.recipes", version_base="1.3"):
        cfg = compose("synthesize", overrides=["n=10", "device=cpu", f"teacher.checkpoint={shapes_teacher_path}",
                                               f"out={tmp_path / 'set'}", "synthesizer.batch_size=24"])
    with pytest.raises(DatafreeError) as error:
        jobs.synthesize_job(cfg, tmp_path / "run")
    message = str(error.value)
    for needle in ("needs at least", "synthesizer.batch_size=24 keeps", "lower the image size (data.image_size)"):
        assert needle in message, message
    assert "trainer.batch_size" not in message  # synthesize has no student step
    assert not (tmp_path / "set").exists()

    # draw=sample back-propagates nothing: a generator's draws are not priced as synthesis steps
    with initialize_config_module("datafree.recipes", version_base="1.3"):
        cfg = compose("synthesize", overrides=["n=10", "device=cpu", f"teacher.checkpoint={shapes_teacher_path}",
                                               f"out={tmp_path / 'drawn'}", "synthesizer=dfad", "draw=sample",
                                               "synthesizer.batch_size=24", "class_counts=as_drawn", "progress=false"])
    jobs.synthesize_job(cfg, tmp_path / "drawn_run")
    assert SyntheticSet(tmp_path / "drawn").__len__() == 10


@pytest.mark.parametrize("synthesizer, draw", [([], "sample"), (["synthesizer=fast", "synthesizer.g_steps=2"], "synthesize")],
                         ids=["dfq", "fast"])
def test_export_from_a_distill_run(tmp_path, shapes_teacher_path, synthesizer, draw, capsys):
    """The generator (and student) a distillation trained, exported: draw=sample from a generator, or a few
    generator steps per batch for the fast synthesizer (a new input layer every round)."""
    run = tmp_path / "distill"
    common = ["experiment=demo_dfq", f"teacher.checkpoint={shapes_teacher_path}", "device=cpu", "progress=false",
              "synthesizer.batch_size=16", *synthesizer]
    with initialize_config_module("datafree.recipes", version_base="1.3"):
        distill = compose("distill", [*common, "teacher.arch=microcnn", "data.image_size=8", "data.train.n=100",
                                      "data.test.n=100", "trainer.rounds=3", "trainer.student_steps=2",
                                      "trainer.batch_size=16", "noise_baseline=false"])
        synthesize = compose("synthesize", [*common, f"from_run={run}", f"draw={draw}", "n=40", "batch_size=16",
                                            "class_counts=as_drawn", f"out={tmp_path / 'set'}", "data.image_size=8"])
    jobs.distill_job(distill, run)
    if draw == "sample":  # a generator of another width cannot take the run's weights
        with initialize_config_module("datafree.recipes", version_base="1.3"):
            wider = compose("synthesize", [*common, f"from_run={run}", "n=40", f"out={tmp_path / 'other'}",
                                           "data.image_size=8", "synthesizer.generator.base_width=32"])
        with pytest.raises(DatafreeError, match="from_run: the synthesizer saved by the run does not fit .*size mismatch"):
            jobs.synthesize_job(wider, tmp_path / "synth_wrong")
        assert not (tmp_path / "other").exists()
    capsys.readouterr()
    jobs.synthesize_job(synthesize, tmp_path / "synth")
    # the next command, and what it needs to measure the student (data=synthetic alone ends with "accuracy n/a")
    assert f"datafree distill data=synthetic data.path={tmp_path / 'set'} (real test images in data.test give the " \
        "student's accuracy" in capsys.readouterr().out
    synthetic = SyntheticSet(tmp_path / "set")
    assert len(synthetic.load()) == 40 and synthetic.verify() == []
    assert synthetic.manifest["synthesizer"]["_target_"] == distill.synthesizer._target_
    assert synthetic.manifest["recipe"]["from_run"] == str(run)
