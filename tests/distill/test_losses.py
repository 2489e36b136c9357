import math

import pytest
import torch

from datafree.distill.losses import KDLoss
from datafree.ops.divergences import jensen_shannon, kd_kl


def test_kd_kl_matches_hand_computation():
    s = torch.tensor([[1.0, 2.0, 0.5]])
    t = torch.tensor([[0.2, 1.5, 2.5]])
    T = 2.0
    p = [math.exp(v / T) for v in t[0].tolist()]
    p = [v / sum(p) for v in p]
    q = [math.exp(v / T) for v in s[0].tolist()]
    q = [v / sum(q) for v in q]
    expected = sum(pi * math.log(pi / qi) for pi, qi in zip(p, q)) * T * T
    assert kd_kl(s, t, T).item() == pytest.approx(expected, rel=1e-5)


def test_kd_is_zero_for_identical_logits_and_batch_mean():
    x = torch.randn(5, 10)
    assert kd_kl(x, x, 4.0).item() == pytest.approx(0.0, abs=1e-6)
    a, b = torch.randn(1, 10), torch.randn(1, 10)
    pair = kd_kl(torch.cat([a, a]), torch.cat([b, b]), 3.0)
    assert pair.item() == pytest.approx(kd_kl(a, b, 3.0).item(), rel=1e-5)


def test_kd_loss_combines_weighted_terms():
    s, t = torch.randn(4, 5), torch.randn(4, 5)
    hard = torch.nn.functional.cross_entropy(s, t.argmax(1))
    loss = KDLoss(temperature=3.0, kd_weight=0.5, hard_weight=2.0)(s, t)
    assert loss.item() == pytest.approx(0.5 * kd_kl(s, t, 3.0).item() + 2.0 * hard.item(), rel=1e-5)
    assert KDLoss(kd_weight=0.0, hard_weight=0.0)(s, t).item() == 0.0
    with pytest.raises(ValueError):
        KDLoss(temperature=0)


def test_jensen_shannon_bounds():
    x = torch.randn(3, 4)
    assert jensen_shannon(x, x).item() == pytest.approx(0.0, abs=1e-6)
    far = jensen_shannon(torch.tensor([[100.0, 0.0]]), torch.tensor([[0.0, 100.0]]))
    assert far.item() == pytest.approx(math.log(2), rel=1e-4)
