"""trainer.ema_decay: the running average of the student's weights, evaluated, saved and delivered (averaging.py)."""
import csv
import signal

import pytest
import torch
from torch import nn

from test_resume import _kill_at, _make, _weights
import copy

from datafree.distill.averaging import WeightAverage, reestimate_batchnorm
from datafree.distill.trainer import calibration_seed
from datafree.ops.hooks import batchnorm_layers
from datafree.synthesizers import NoiseSynthesizer
from datafree.teachers import ClassifierInfo
from datafree.utils.logging import RunLogger
from datafree.utils.run_state import LAST
from datafree.utils.signals import Interrupted


def test_the_average_follows_the_decay_with_its_warm_up_and_copies_counts():
    net = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    average = WeightAverage(net, decay=0.5)
    start = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    net.train()(torch.randn(8, 3))  # moves the running statistics and counts one batch
    average.update()
    # After one update the decay is min(0.5, 2/11): the average moves 9/11 of the way.
    moved = 1 - 2 / 11
    for name, value in average.module.state_dict().items():
        now = net.state_dict()[name]
        if value.is_floating_point():
            assert torch.allclose(value, start[name] + moved * (now - start[name])), name
        else:
            assert torch.equal(value, now), name  # num_batches_tracked: copied
    for _ in range(50):
        average.update()
    # Later the decay is the one asked for: 0.5 per update, so the average has caught up.
    for name, value in average.module.state_dict().items():
        assert torch.allclose(value.float(), net.state_dict()[name].float(), atol=1e-6), name


class _Probe:
    """A hook's owner that must not be copied (it could hold a teacher)."""

    def __init__(self):
        self.seen = 0

    def __deepcopy__(self, memo):
        raise AssertionError("the hook's owner was copied")

    def hook(self, *args):
        self.seen += 1


def test_the_copy_has_no_hooks_and_is_not_trained():
    net = nn.Sequential(nn.Linear(3, 2))
    probe = _Probe()
    net[0].register_forward_hook(probe.hook)
    net.register_forward_pre_hook(lambda *args: None)
    average = WeightAverage(net, decay=0.9)
    average.module(torch.randn(1, 3))
    assert probe.seen == 0 and not any(p.requires_grad for p in average.module.parameters())
    assert not average.module._forward_pre_hooks and net._forward_pre_hooks  # the student keeps its own
    net(torch.randn(1, 3))
    assert probe.seen == 1
    assert not average.module.training
    with pytest.raises(ValueError, match="decay must be in"):
        WeightAverage(net, decay=1.0)


def test_the_run_delivers_the_average_and_logs_both(tmp_path, caplog):
    caplog.set_level("INFO", logger="datafree")
    info = ClassifierInfo(arch="tiny", num_classes=4, input_size=(3, 8, 8), mean=(0.5,) * 3, std=(0.25,) * 3)
    logger = RunLogger(tmp_path, tensorboard=False)
    d = _make(tmp_path / "state", synthesizer=NoiseSynthesizer(batch_size=8), ema_decay=0.9, logger=logger,
              student_info=info, checkpoint_path=tmp_path / "student.pt")
    raw = d.student
    result = d.fit()
    logger.close()
    rows = list(csv.DictReader((tmp_path / "summary.csv").open()))
    assert [int(r["round"]) for r in rows] == [2, 4] and all(r["unaveraged_accuracy"] for r in rows)
    saved = torch.load(tmp_path / "student.pt", weights_only=True)["state_dict"]
    averaged = d.average.module.state_dict()
    for name, value in averaged.items():  # student.pt and the student handed on are the average
        assert torch.equal(saved[name], value.cpu()), name
        assert torch.equal(raw.state_dict()[name], value), name
    assert result.student_accuracy == pytest.approx(float(rows[-1]["student_accuracy"]))
    assert "(the average of its weights; the weights themselves 0." in caplog.text
    assert ("trainer.ema_bn_batches=50: the average's BatchNorm statistics re-estimated before each evaluation over 50 "
            "batches of 8 replay-pool images") in caplog.text


def test_without_averaging_nothing_changes_and_with_it_the_weights_train_the_same(tmp_path):
    plain = _make(tmp_path / "a", synthesizer=NoiseSynthesizer(batch_size=8))
    plain.fit()
    assert plain.average is None
    again = _make(tmp_path / "b", synthesizer=NoiseSynthesizer(batch_size=8), ema_decay=0.0)
    again.fit()
    for name, value in _weights(again).items():
        assert torch.equal(value, _weights(plain)[name]), name
    # With the average the weights themselves train bit for bit as without it (the state keeps them; the student
    # handed on is the average).
    averaged = _make(tmp_path / "c", synthesizer=NoiseSynthesizer(batch_size=8), ema_decay=0.8)
    averaged.fit()
    weights = torch.load(tmp_path / "c" / LAST, weights_only=True)["student"]
    for name, value in _weights(plain).items():
        assert torch.equal(weights[name], value), name
    assert any(not torch.equal(averaged.student.state_dict()[k], v) for k, v in _weights(plain).items())


def test_reestimate_takes_the_plain_mean_over_the_batches_in_place():
    net = nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 2, 1)).eval()
    layer = net[0]
    mean_before, var_before = layer.running_mean.clone(), layer.running_var.clone()
    addresses = (layer.running_mean.data_ptr(), layer.running_var.data_ptr())
    torch.manual_seed(0)
    batches = [torch.randn(6, 3, 4, 4) * (1 + i) + i for i in range(3)]
    assert reestimate_batchnorm(net, iter(()), torch.device("cpu")) == 0  # nothing to draw: nothing changes
    assert torch.equal(layer.running_mean, mean_before) and torch.equal(layer.running_var, var_before)
    assert reestimate_batchnorm(net, iter(batches), torch.device("cpu")) == 3
    means = torch.stack([b.mean((0, 2, 3)) for b in batches])
    variances = torch.stack([b.transpose(0, 1).reshape(3, -1).var(1) for b in batches])  # unbiased, as BatchNorm keeps
    assert torch.allclose(layer.running_mean, means.mean(0), atol=1e-6)
    assert torch.allclose(layer.running_var, variances.mean(0), atol=1e-5)
    assert (layer.running_mean.data_ptr(), layer.running_var.data_ptr()) == addresses  # a captured step holds them
    assert layer.momentum == 0.1 and not net.training  # as it was
    assert reestimate_batchnorm(nn.Sequential(nn.Linear(2, 2)), iter([torch.randn(2, 2)]), torch.device("cpu")) == 0


def test_the_delivered_average_has_its_statistics_reestimated_and_the_weights_train_the_same(tmp_path):
    # Re-estimated: the statistics are those of the pool's own draws at the last evaluation, the parameters the
    # average's; averaged (trainer.ema_bn_batches=0): the same parameters, other statistics. Either way the weights
    # themselves train bit for bit alike: the draws come from their own generator.
    runs = {}
    for count in (0, 4):
        d = _make(tmp_path / str(count), synthesizer=NoiseSynthesizer(batch_size=8), ema_decay=0.8,
                  ema_bn_batches=count)
        d.fit()
        runs[count] = d
    delivered, averaged = runs[4].average.module, runs[0].average.module
    expected = copy.deepcopy(delivered)
    assert reestimate_batchnorm(expected, runs[4].source.calibration_batches(4, calibration_seed(12)),
                                torch.device("cpu")) == 4  # the last evaluation: round 4, student step 12
    stats = [name for layer in ("running_mean", "running_var") for name, _ in delivered.named_buffers()
             if name.endswith(layer)]
    assert stats and len(batchnorm_layers(delivered)) * 2 == len(stats)
    for name, value in delivered.state_dict().items():
        if name in stats:
            assert torch.equal(value, expected.state_dict()[name]), name
            assert not torch.equal(value, averaged.state_dict()[name]), name
        elif value.is_floating_point():
            assert torch.equal(value, averaged.state_dict()[name]), name
    for name, value in torch.load(tmp_path / "4" / LAST, weights_only=True)["student"].items():
        assert torch.equal(value, torch.load(tmp_path / "0" / LAST, weights_only=True)["student"][name]), name


def test_without_a_pool_the_statistics_stay_averaged_and_the_log_says_so(tmp_path, caplog):
    caplog.set_level("INFO", logger="datafree")
    d = _make(tmp_path, synthesizer=NoiseSynthesizer(batch_size=8), ema_decay=0.8, replay=0.0,
              logger=RunLogger(tmp_path, tensorboard=False))
    d.fit()
    assert "this run keeps no replay pool to re-estimate the average's BatchNorm statistics on" in caplog.text


def test_before_the_first_round_the_statistics_stay_averaged_and_the_log_says_none_yet(tmp_path, caplog):
    # A run whose time is spent before its first round evaluates with an empty replay pool: that is not a run
    # without one (the test above), and the next evaluation re-estimates and says so.
    caplog.set_level("INFO", logger="datafree")
    d = _make(tmp_path, synthesizer=NoiseSynthesizer(batch_size=8), ema_decay=0.8,
              logger=RunLogger(tmp_path, tensorboard=False))
    before = copy.deepcopy(d.average.module.state_dict())
    d._reestimate_average(0)
    assert ("trainer.ema_bn_batches=50: no replay-pool images yet at step 0, so this evaluation's average keeps its "
            "BatchNorm statistics averaged with its weights") in caplog.text
    assert "keeps no replay pool" not in caplog.text
    for name, value in d.average.module.state_dict().items():
        assert torch.equal(value, before[name]), name
    d.fit()
    assert "the average's BatchNorm statistics re-estimated before each evaluation" in caplog.text


def test_the_average_resumes_bitwise(tmp_path):
    reference = _make(tmp_path / "ref", "fast", ema_decay=0.8)
    reference.fit()
    expected = _weights(reference)
    run_dir = tmp_path / "run"
    d = _make(run_dir, "fast", ema_decay=0.8)
    _kill_at(d, 5)
    with pytest.raises(Interrupted) as info:
        d.fit()
    assert info.value.exit_code == 128 + signal.SIGTERM
    resumed = _make(run_dir, "fast", resume=True, ema_decay=0.8)
    resumed.fit()
    assert torch.equal(resumed.average.updates, reference.average.updates)
    for name, value in _weights(resumed).items():
        assert torch.equal(value, expected[name]), name


def test_the_command_says_the_accuracy_is_the_averages(tmp_path, capsys):
    from test_cli import TINY, in_process

    args = [*TINY, "trainer.ema_decay=0.9", "noise_baseline=false"]
    proc = in_process(capsys, "distill", *args, f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("student microcnn: test accuracy"))
    assert ", the average of its weights (the weights themselves " in line
    rows = list(csv.DictReader((tmp_path / "run" / "summary.csv").open()))
    assert f"{100 * float(rows[-1]['student_accuracy']):.2f}%, the average" in line
