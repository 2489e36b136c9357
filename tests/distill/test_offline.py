"""Offline distillation from a stored synthetic set: learns, streams shards, resumes exactly, refuses teacher-only terms."""
import copy
import csv
import os
import signal

import pytest
import torch
from hydra import compose, initialize_config_module

from fakes import AimingSynthesizer, red_teacher
from datafree import jobs
from datafree.api import make_student
from datafree.distill.losses import KDLoss
from datafree.distill.sources import StoredSource
from datafree.distill.trainer import Distiller
from datafree.errors import DatafreeError
from datafree.export import SyntheticSet, synthesize_dataset
from datafree.export.stream import SyntheticBatches
from datafree.utils.run_state import StateFiles
from datafree.utils.signals import Interrupted


def _compose(name, overrides):
    with initialize_config_module("datafree.recipes", version_base="1.3"):
        return compose(name, overrides=overrides)


def test_offline_student_beats_chance_and_a_noise_export(tmp_path, shapes_teacher_path, capsys):
    common = [f"teacher.checkpoint={shapes_teacher_path}", "n=240", "shard_size=80", "device=cpu", "progress=false"]
    jobs.synthesize_job(_compose("synthesize", [*common, f"out={tmp_path / 'di'}", "synthesizer.batch_size=40",
                                                "synthesizer.iterations=40", "class_counts=as_drawn"]), tmp_path / "run_di")
    jobs.synthesize_job(_compose("synthesize", [*common, f"out={tmp_path / 'noise'}", "synthesizer=noise",
                                                "synthesizer.batch_size=40", "class_counts=as_drawn"]), tmp_path / "run_noise")
    accuracy = {}
    for name in ("di", "noise"):
        cfg = _compose("distill", [f"data=synthetic_shapes", f"data.path={tmp_path / name}", "data.image_size=8",
                                   "data.test.n=500", "data.crop_padding=1", "trainer.rounds=15", "trainer.student_steps=20",
                                   "trainer.batch_size=32", "trainer.eval_every=15", "device=cpu", "progress=false"])
        summary = jobs.distill_job(cfg, tmp_path / f"student_{name}")
        accuracy[name] = summary["student_accuracy"]
        assert torch.load(tmp_path / f"student_{name}" / "student.pt", weights_only=True)["arch"] == "microcnn"
    assert accuracy["di"] > 0.25 and accuracy["di"] > accuracy["noise"] + 0.1, accuracy  # chance is 10%
    # 240 samples in steps of 32: a pass uses 224 of them, the ones left out changing with each pass's order
    assert ("passes over 240 stored samples, 32 a step; a pass leaves out what does not fill its last batch, in a new "
            "order each pass)") in capsys.readouterr().out


@pytest.fixture
def small_set(tmp_path):
    synthesize_dataset(red_teacher(), AimingSynthesizer(batch_size=16), tmp_path / "set", 64, shard_size=16,
                       progress=False, log=lambda _: None)
    return SyntheticSet(tmp_path / "set")


def test_shards_stream_in_windows_and_every_sample_comes_once_per_epoch(small_set):
    stored = small_set.load().logits.float()
    stream = SyntheticBatches(small_set, 8, "cpu", crop_padding=1, device_budget_mb=0)  # one shard per window
    assert not stream.single and stream.capacity == 1
    stream.capacity = 32  # two shards per window
    seen = []
    for images, logits in stream:
        seen.append(logits)
        if stream.epoch == 1:
            break
    seen = torch.cat(seen[:-1])
    assert seen.shape == stored.shape and torch.equal(seen[seen[:, 0].argsort()], stored[stored[:, 0].argsort()])
    assert images.shape == (8, 3, 8, 8) and 0 <= float(images.min()) and float(images.max()) <= 1


def _run(small_set, state_dir, resume=False, kill_at=None, terms=None):
    torch.manual_seed(0)
    student, _ = make_student("microcnn", red_teacher().info, "cpu")
    source = StoredSource(small_set, crop_padding=1, device_budget_mb=0, seed=3)
    bind = source.bind

    def bound(*args, **kwargs):
        bind(*args, **kwargs)
        source.batches.capacity = 32  # windows of two shards: the position spans epochs and windows
        if kill_at is not None:
            real_iter = SyntheticBatches.__iter__

            def iterate(self):
                for number, batch in enumerate(real_iter(self), 1):
                    if number == kill_at:
                        os.kill(os.getpid(), signal.SIGTERM)
                    yield batch

            source.batches.__class__ = type("Killing", (SyntheticBatches,), {"__iter__": iterate})

    source.bind = bound
    state = StateFiles(state_dir, config={"lr": 0.05}, resume=resume, notice=lambda m: None)
    distiller = Distiller.from_options(None, student, source, device=torch.device("cpu"), num_classes=small_set.num_classes,
                                       input_size=small_set.image_shape, rounds=6, student_steps=5, batch_size=8,
                                       lr=0.05, loss=KDLoss(temperature=1.0), eval_every=2, log_every=5,
                                       checkpoint_every=7, amp=False, state=state, progress=False, **(terms or {}))
    distiller.fit()
    weights = {k: v.clone() for k, v in student.state_dict().items()}
    if distiller.average is not None:  # what the run delivers, its statistics re-estimated at the last evaluation
        weights.update({f"average.{k}": v.clone() for k, v in distiller.average.module.state_dict().items()})
    adversary = distiller.objectives.adversary
    if adversary is not None:
        weights.update({f"discriminator.{k}": v.clone() for k, v in adversary.net.state_dict().items()})
    return weights


# Terms on logits work from the stored logits: relation and adversarial KD offline.
LOGIT_TERMS = {"rkd": {"distance_weight": 1.0, "embedding": "logits"},
               "discriminator": {"weight": 0.1, "embedding": "logits", "hidden": [16]}}


# The average of the weights, its statistics re-estimated on the window the stream holds at each evaluation.
AVERAGED = {"ema_decay": 0.8, "ema_bn_batches": 2}


@pytest.mark.parametrize("terms", [None, LOGIT_TERMS, AVERAGED], ids=["kd", "rkd+discriminator", "average"])
def test_sigterm_and_resume_is_bitwise_identical(small_set, tmp_path, terms):
    reference = _run(small_set, tmp_path / "ref", terms=terms)
    with pytest.raises(Interrupted) as stopped:
        _run(small_set, tmp_path / "cut", kill_at=13, terms=terms)
    assert stopped.value.exit_code == 143
    resumed = _run(small_set, tmp_path / "cut", resume=True, terms=terms)
    assert set(resumed) == set(reference) and all(torch.equal(reference[k], resumed[k]) for k in reference)
    if terms is LOGIT_TERMS:  # the discriminator trained beside the student
        assert any(k.startswith("discriminator.") for k in reference)


def test_an_average_stopped_after_its_last_step_resumes_to_the_average_it_would_have_delivered(small_set, tmp_path):
    # Resumed after its last student step, the run evaluates before it draws a batch: the re-estimate must draw
    # from the window the run it continues held (the last of 30 batches: two windows of two shards, 8 batches each).
    reference = _run(small_set, tmp_path / "ref", terms=AVERAGED)
    with pytest.raises(Interrupted, match="after student step 30"):
        _run(small_set, tmp_path / "cut", kill_at=30, terms=AVERAGED)
    resumed = _run(small_set, tmp_path / "cut", resume=True, terms=AVERAGED)
    assert any(k.startswith("average.") and k.endswith("running_var") for k in reference)
    assert set(resumed) == set(reference) and all(torch.equal(reference[k], resumed[k]) for k in reference)


def test_logit_terms_offline_log_into_the_summary(small_set, tmp_path):
    cfg = _compose("distill", ["data=synthetic", f"data.path={small_set.folder}", "device=cpu", "progress=false",
                               "data.image_size=null", "trainer.rounds=4", "trainer.student_steps=5",
                               "trainer.batch_size=8", "trainer.eval_every=2", "trainer.log_every=5",
                               "trainer.rkd.distance_weight=1", "trainer.rkd.embedding=logits",
                               "trainer.discriminator.weight=0.1", "trainer.discriminator.hidden=[16]",
                               "data.test=null"])
    jobs.distill_job(cfg, tmp_path / "run")
    rows = list(csv.DictReader((tmp_path / "run" / "summary.csv").open()))
    assert rows and {"loss_rkd_distance", "loss_adversarial", "discriminator_accuracy"} <= set(rows[-1]), rows[-1]
    assert 0.0 <= float(rows[-1]["discriminator_accuracy"]) <= 1.0


def test_teacher_feature_terms_are_refused_offline(small_set, tmp_path):
    cfg = _compose("distill", ["data=synthetic", f"data.path={small_set.folder}", "device=cpu",
                               "trainer.attention={weight: 1, teacher_layers: [a], student_layers: [b]}"])
    with pytest.raises(DatafreeError, match="trainer.attention .* only the stored logits"):
        jobs.distill_job(cfg, tmp_path / "run")
    cfg = _compose("distill", ["data=synthetic", f"data.path={small_set.folder}", "device=cpu",
                               "trainer.discriminator.weight=0.1", "trainer.discriminator.embedding=penultimate"])
    with pytest.raises(DatafreeError, match="trainer.discriminator.embedding=penultimate .* set "
                                            "trainer.discriminator.embedding=logits"):
        jobs.distill_job(cfg, tmp_path / "run2")
    assert not (tmp_path / "run2" / "summary.csv").exists()


def test_a_batch_larger_than_the_stored_set_is_priced_as_the_set(small_set, tmp_path, monkeypatch):
    # a set of 64 samples makes one batch of all of them whatever trainer.batch_size says: the CPU's memory check
    # prices that batch, not a billion images that never come
    from datafree.distill import preflight

    seen = []
    real = preflight.check_host_memory
    monkeypatch.setattr("datafree.distill.trainer.check_host_memory",
                        lambda *a, **k: seen.append(k["batch_size"]) or real(*a, **k))
    cfg = _compose("distill", ["data=synthetic", f"data.path={small_set.folder}", "device=cpu", "progress=false",
                               "data.image_size=null", "trainer.rounds=1", "trainer.student_steps=1",
                               "trainer.batch_size=1000000000", "data.test=null"])
    jobs.distill_job(cfg, tmp_path / "run")
    assert seen == [64]


def test_the_report_of_an_offline_run_says_its_teacher_never_ran_and_names_the_sets(tmp_path, capsys):
    """report run=OFFLINE_RUN said 'no teacher (give run=RUN_DIR or teacher.checkpoint=PATH)' to a user who had given
    run=: an offline run has no teacher to load; the line says so and names the teacher file that made its set."""
    synthesize_dataset(red_teacher(), AimingSynthesizer(batch_size=16), tmp_path / "set", 32, progress=False,
                       recipe={"teacher": {"checkpoint": "owner/teacher.pt"}}, log=lambda _: None)
    cfg = _compose("distill", ["data=synthetic", f"data.path={tmp_path / 'set'}", "device=cpu", "progress=false",
                               "data.image_size=null", "trainer.rounds=1", "trainer.student_steps=2",
                               "trainer.batch_size=8", "data.test=null"])
    jobs.distill_job(cfg, tmp_path / "run")
    capsys.readouterr()
    jobs.report_job(_compose("report", [f"run={tmp_path / 'run'}", "device=cpu", "latency=false", "cka_images=16"]),
                    tmp_path / "report")
    assert (f"not measured: agreement with the teacher and feature similarity: no teacher: {tmp_path / 'run'} is an "
            "offline run, whose teacher never ran (give teacher.checkpoint=PATH: owner/teacher.pt made its synthetic "
            "set)\n") in capsys.readouterr().out


@pytest.mark.parametrize("held", ["whole set", "windows of shards"])
def test_a_stream_draws_before_its_first_batch_from_what_it_starts_with(small_set, held):
    # A run resumed after its last step evaluates before its stream gives a batch: its re-estimate must draw from
    # the samples the run it continues held then, and the stream must go on as if nothing was drawn.
    def stream():
        made = SyntheticBatches(small_set, 8, "cpu", crop_padding=1, device_budget_mb=64 if held == "whole set" else 0)
        made.capacity = made.capacity if held == "whole set" else 32  # two shards per window
        assert made.single == (held == "whole set")
        return made

    def drawn(made):
        return torch.stack(list(made.draw(3, torch.Generator().manual_seed(5))))

    fresh, going = stream(), stream()
    before = drawn(fresh)
    batches = iter(going)
    first = next(batches)
    assert torch.equal(drawn(going), before)
    assert all(torch.equal(a, b) for a, b in zip(next(iter(fresh)), first))
    while going.window == 0 and going.epoch == 0:  # into the second window (the whole set: its second epoch)
        next(batches)
    state, expected = going.state_dict(), drawn(going)
    if held == "windows of shards":
        assert not torch.equal(expected, before)
    resumed = stream()
    resumed.load_state_dict(state)
    assert torch.equal(drawn(resumed), expected)
    assert all(torch.equal(a, b) for a, b in zip(next(iter(resumed)), next(batches)))


def test_an_offline_average_has_its_statistics_reestimated_on_the_stored_set(small_set, tmp_path, caplog):
    # A stored set has no replay pool, but the samples its stream holds: the average's BatchNorm statistics are
    # re-estimated on them, from draws of their own (the weights train as without them), as a resumed run draws.
    from datafree.distill.averaging import reestimate_batchnorm
    from datafree.distill.trainer import calibration_seed
    from datafree.ops.hooks import batchnorm_layers
    from datafree.utils.logging import RunLogger
    from datafree.utils.run_state import LAST

    caplog.set_level("INFO", logger="datafree")
    runs = {}
    for count in (0, 3):
        torch.manual_seed(0)
        student, _ = make_student("microcnn", red_teacher().info, "cpu")
        source = StoredSource(small_set, crop_padding=1, device_budget_mb=0, seed=3)
        distiller = Distiller.from_options(
            None, student, source, device=torch.device("cpu"), num_classes=small_set.num_classes,
            input_size=small_set.image_shape, rounds=6, student_steps=5, batch_size=8, lr=0.05,
            loss=KDLoss(temperature=1.0), eval_every=2, amp=False, progress=False, ema_decay=0.8,
            ema_bn_batches=count, logger=RunLogger(tmp_path / str(count), tensorboard=False),
            state=StateFiles(tmp_path / str(count), config={"lr": 0.05}, resume=False, notice=lambda m: None))
        distiller.fit()
        runs[count] = distiller
    assert "over 3 batches of 8 stored-set images" in caplog.text and "keeps no replay pool" not in caplog.text
    delivered, averaged = runs[3].average.module, runs[0].average.module
    assert batchnorm_layers(delivered)
    expected = copy.deepcopy(delivered)  # the last evaluation's draws: after student step 30, from the window then
    assert reestimate_batchnorm(expected, runs[3].source.calibration_batches(3, calibration_seed(30)),
                                torch.device("cpu")) == 3
    for name, value in delivered.state_dict().items():
        if name.endswith(("running_mean", "running_var")):
            assert torch.equal(value, expected.state_dict()[name]), name
            assert not torch.equal(value, averaged.state_dict()[name]), name
        elif value.is_floating_point():
            assert torch.equal(value, averaged.state_dict()[name]), name
    trained = {count: torch.load(tmp_path / str(count) / LAST, weights_only=True)["student"] for count in runs}
    for name, value in trained[3].items():  # the weights themselves, as the run's last state holds them
        assert torch.equal(value, trained[0][name]), name
