"""The adversarial term's discriminator, by hand on a linear discriminator: losses, accuracy, one update."""
import functools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from datafree.distill.discriminator import Adversary, mlp
from datafree.errors import DatafreeError

CPU = torch.device("cpu")
TEACHER = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
STUDENT = torch.tensor([[1.0, 1.0], [0.0, 2.0]])


def _linear(width: int) -> nn.Linear:
    """D(x) = x0 - x1."""
    layer = nn.Linear(width, 1)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, -1.0]]))
        layer.bias.zero_()
    return layer


def _adversary(**kw) -> Adversary:
    options = dict(weight=2.0, arch=_linear, optimizer="sgd", lr=0.1)
    options.update(kw)
    return Adversary(2, 2, CPU, max_nonfinite=20, **options)


def _sp(x: float) -> float:
    return F.softplus(torch.tensor(x)).item()


def test_student_loss_by_hand_and_only_into_the_student():
    adversary = _adversary()
    student = STUDENT.clone().requires_grad_(True)
    loss = adversary.student_loss(student)
    # D(student) = [0, -2]; the student wants "real": weight * mean softplus(-D).
    assert loss.item() == pytest.approx(2.0 * (_sp(0.0) + _sp(2.0)) / 2, rel=1e-6)
    loss.backward()
    assert student.grad is not None and all(p.grad is None for p in adversary.net.parameters())


def test_update_by_hand():
    adversary = _adversary()
    teacher = TEACHER.clone().requires_grad_(True)  # a teacher output that could carry a gradient: it must not get one
    loss, accuracy = adversary.update(teacher, STUDENT).tolist()
    real, fake = [2.0, -1.0], [0.0, -2.0]
    assert loss == pytest.approx((_sp(-2.0) + _sp(1.0)) / 2 + (_sp(0.0) + _sp(-2.0)) / 2, rel=1e-6)
    # Teacher outputs called real: 1 of 2 (D = 2 > 0); student outputs called fake: 1 of 2 (D = -2 < 0; 0 is not).
    assert accuracy == pytest.approx(0.5)
    # One SGD step on d/dw [mean softplus(-D(t)) + mean softplus(D(s))] = mean -sigmoid(-D(t)) t + mean sigmoid(D(s)) s.
    sig = lambda v: 1 / (1 + torch.exp(-torch.tensor(v)).item())  # noqa: E731
    grad_w = sum(-sig(-r) * TEACHER[i] for i, r in enumerate(real)) / 2 + sum(sig(f) * STUDENT[i] for i, f in enumerate(fake)) / 2
    grad_b = sum(-sig(-r) for r in real) / 2 + sum(sig(f) for f in fake) / 2
    assert torch.allclose(adversary.net.weight[0], torch.tensor([1.0, -1.0]) - 0.1 * grad_w, atol=1e-6)
    assert adversary.net.bias.item() == pytest.approx(-0.1 * grad_b, abs=1e-6)
    assert teacher.grad is None


def test_update_ratio_steps_and_every():
    twice = _adversary(steps=2)
    once = _adversary()
    for _ in range(2):
        once.update(TEACHER, STUDENT)
    twice.update(TEACHER, STUDENT)  # two updates on the same batch in one round
    assert torch.equal(once.net.weight, twice.net.weight)

    every = _adversary(every=2)
    weights = []
    for _ in range(3):
        every.update(TEACHER, STUDENT)
        weights.append(every.net.weight.detach().clone())
    assert not torch.equal(weights[0], _linear(2).weight)  # round 0: updated
    assert torch.equal(weights[1], weights[0])  # round 1: skipped on the device
    assert not torch.equal(weights[2], weights[1])  # round 2: updated
    assert every.guard.skipped.item() == 0  # a round off is not a non-finite step


def test_a_non_finite_update_is_skipped_and_counted():
    adversary = _adversary(optimizer="adam", lr=0.01)
    before = adversary.net.weight.detach().clone()
    adversary.update(torch.tensor([[float("nan"), 0.0], [0.0, 1.0]]), STUDENT)
    assert torch.equal(adversary.net.weight, before) and adversary.guard.skipped.item() == 1
    adversary.update(TEACHER, STUDENT)
    assert not torch.equal(adversary.net.weight, before)


def test_default_mlp_and_width_adapter():
    adversary = Adversary(16, 8, CPU, max_nonfinite=20, weight=1.0, hidden=[32])
    assert [type(m).__name__ for m in adversary.net] == ["Linear", "LeakyReLU", "Linear"]
    assert isinstance(adversary.adapter, nn.Linear) and adversary.adapter.weight.shape == (16, 8)
    assert adversary.student_parameters() == [adversary.adapter.weight]
    assert isinstance(mlp(4, []), nn.Sequential) and len(mlp(4, [])) == 1  # a linear discriminator
    # arch: any factory of the input width, e.g. a _partial_ recipe node.
    custom = Adversary(4, 4, CPU, max_nonfinite=20, weight=1.0, arch=functools.partial(nn.Linear, out_features=1))
    assert isinstance(custom.net, nn.Linear) and custom.student_parameters() == []


def test_bad_settings_are_refused():
    with pytest.raises(DatafreeError, match="one logit per sample"):
        Adversary(4, 4, CPU, max_nonfinite=20, weight=1.0, arch=functools.partial(nn.Linear, out_features=3))
    with pytest.raises(DatafreeError, match="hidden lists the hidden layers' widths"):
        Adversary(4, 4, CPU, max_nonfinite=20, weight=1.0, hidden=[0])
    with pytest.raises(DatafreeError, match="optimizer 'rmsprop': choose 'adam' or 'sgd'"):
        Adversary(4, 4, CPU, max_nonfinite=20, weight=1.0, optimizer="rmsprop")
    with pytest.raises(DatafreeError, match="every must be an int >= 1"):
        Adversary(4, 4, CPU, max_nonfinite=20, weight=1.0, every=0)
