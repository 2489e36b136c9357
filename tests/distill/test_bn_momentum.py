"""trainer.bn_momentum: the student's BatchNorm running statistics follow its weights during a run."""
from __future__ import annotations

import logging

import pytest
import torch
import torchvision
from torch.nn.modules.batchnorm import _BatchNorm

from datafree.models.bn_momentum import set_bn_momentum
from datafree.models import create_model


def _momenta(model):
    return {m.momentum for m in model.modules() if isinstance(m, _BatchNorm)}


@pytest.mark.parametrize("setting, expected, says", [
    ("auto", {0.1}, "BatchNorm momentum 0.01 -> 0.1 in 34 of 34 layers for this run (trainer.bn_momentum=auto)"),
    ("keep", {0.01}, None),
    (0.3, {0.3}, "BatchNorm momentum 0.01 -> 0.3 in 34 of 34 layers"),
])
def test_a_torchvision_mobilenet_v3s_lagging_momentum_is_raised_for_the_run(setting, expected, says):
    model = torchvision.models.mobilenet_v3_small(num_classes=4)
    assert _momenta(model) == {0.01}  # torchvision's, from TensorFlow's ImageNet settings
    note = set_bn_momentum(model, setting)
    assert _momenta(model) == expected
    assert (note is None) == (says is None) and (says is None or says in note)


def test_auto_leaves_a_momentum_of_0_1_or_more_and_raises_a_cumulative_average():
    zoo = create_model("resnet18", num_classes=10)
    assert set_bn_momentum(zoo, "auto") is None and _momenta(zoo) == {0.1}  # the zoo's CIFAR students: unchanged
    fast = torch.nn.Sequential(torch.nn.BatchNorm2d(3, momentum=0.5), torch.nn.BatchNorm2d(3, momentum=None))
    assert "None -> 0.1 in 1 of 2 layers" in set_bn_momentum(fast, "auto")
    assert [m.momentum for m in fast] == [0.5, 0.1]


def test_with_the_run_momentum_eval_mode_follows_the_weights_ten_times_sooner():
    """The mechanism, weights held fixed: a fresh MobileNetV3-Small in eval mode answers every image alike until its
    running variances (1 at the start) have come down to its activations' (far smaller). After 100 training-mode
    batches, at torchvision's 0.01 they have not; at the run's 0.1 its eval outputs move nearly as much as once its
    statistics are exact (one batch at momentum 1)."""
    torch.manual_seed(0)
    images = torch.rand(16, 3, 32, 32) * 4 - 2

    def eval_spread(setting, batches):
        torch.manual_seed(1)  # the same weights every time
        model = torchvision.models.mobilenet_v3_small(num_classes=4)
        set_bn_momentum(model, setting)
        with torch.no_grad():
            model.train()
            for _ in range(batches):
                model(images)
            logits = model.eval()(images)
        return float((logits.max(0).values - logits.min(0).values).max())

    exact = eval_spread(1.0, 1)
    assert exact > 0.01
    assert eval_spread("keep", 100) < 0.01 * exact
    assert eval_spread("auto", 100) > 0.5 * exact


def test_the_distiller_applies_it_and_says_so(tmp_path, caplog):
    from datafree.distill.trainer import Distiller
    from datafree.synthesizers import NoiseSynthesizer
    from datafree.teachers import freeze
    from datafree.utils.logging import RunLogger
    from nets import calibrated_bn_net

    student = torchvision.models.mobilenet_v3_small(num_classes=4)
    with caplog.at_level(logging.INFO, logger="datafree"):
        Distiller.from_options(freeze(calibrated_bn_net()), student, NoiseSynthesizer(batch_size=8),
                               device=torch.device("cpu"), num_classes=4, input_size=(3, 8, 8), rounds=1,
                               student_steps=1, batch_size=8, amp=False, progress=False,
                               logger=RunLogger(tmp_path, tensorboard=False))
    assert _momenta(student) == {0.1}
    assert any("BatchNorm momentum 0.01 -> 0.1 in 34 of 34 layers" in r.getMessage() for r in caplog.records)
