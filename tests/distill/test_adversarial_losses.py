import math

import pytest
import torch
import torch.nn.functional as F

from datafree.distill.losses import KDLoss, LogitL1Loss, attention_map, attention_transfer
from datafree.ops.divergences import agreement_mask, kd_kl, logit_l1, masked_kl


def _kl(p_logits, q_logits):
    """KL(softmax(p) || softmax(q)) for one sample, by hand."""
    p = [math.exp(v) for v in p_logits]
    p = [v / sum(p) for v in p]
    q = [math.exp(v) for v in q_logits]
    q = [v / sum(q) for v in q]
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))


def test_logit_l1_by_hand():
    s = torch.tensor([[1.0, -2.0, 0.5], [0.0, 0.0, 3.0]])
    t = torch.tensor([[0.0, 1.0, 0.5], [2.0, 0.0, 1.0]])
    # |1| + |3| + 0 + |2| + 0 + |2| = 8 over 6 entries
    assert logit_l1(s, t).item() == pytest.approx(8 / 6)
    assert LogitL1Loss()(s, t).item() == pytest.approx(8 / 6)
    assert LogitL1Loss(temperature=2.0)(s, t).item() == pytest.approx(4 / 6)
    with pytest.raises(ValueError):
        LogitL1Loss(temperature=0)


def test_logit_l1_loss_is_a_kd_loss_drop_in():
    s = torch.randn(4, 5, requires_grad=True)
    t = torch.randn(4, 5)
    for loss in (KDLoss(), LogitL1Loss()):
        value = loss(s, t)
        assert value.dim() == 0 and loss.temperature > 0
        (grad,) = torch.autograd.grad(value, [s])
        assert grad.abs().sum() > 0


def test_agreement_mask_and_masked_kl_by_hand():
    s = torch.tensor([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 1.0]])
    t = torch.tensor([[3.0, 1.0, 0.0], [2.0, 0.0, 0.0], [0.0, 1.0, 3.0]])
    # argmax: student (0, 1, 2), teacher (0, 0, 2) -> rows 0 and 2 agree
    assert agreement_mask(s, t).tolist() == [True, False, True]
    expected = (_kl(t[0].tolist(), s[0].tolist()) + _kl(t[2].tolist(), s[2].tolist())) / 3
    assert masked_kl(s, t).item() == pytest.approx(expected, rel=1e-5)
    # With every row agreeing it is plain KL(teacher || student); with none it is 0.
    assert masked_kl(t, t + 0.1 * t).item() == pytest.approx(kd_kl(t, t + 0.1 * t).item(), rel=1e-5)
    assert masked_kl(s[1:2], t[1:2]).item() == 0.0


def test_masked_kl_temperature_matches_kd_kl_when_all_agree():
    t = torch.tensor([[3.0, 0.0, -1.0], [0.0, 2.0, 1.0]])
    s = torch.tensor([[1.0, 0.5, 0.0], [0.0, 1.0, 0.9]])
    assert masked_kl(s, t, 4.0).item() == pytest.approx(kd_kl(s, t, 4.0).item(), rel=1e-5)


def test_attention_map_by_hand():
    f = torch.tensor([[[[1.0, 2.0]], [[3.0, 0.0]]]])  # (1, 2 channels, 1, 2)
    energy = [(1 + 9) / 2, (4 + 0) / 2]  # channel mean of squares: [5, 2]
    norm = math.sqrt(5**2 + 2**2)
    assert attention_map(f)[0].tolist() == pytest.approx([5 / norm, 2 / norm])
    assert attention_map(torch.randn(3, 4, 5, 6)).norm(dim=1).tolist() == pytest.approx([1.0] * 3)


def test_attention_transfer_by_hand_and_across_sizes():
    s1, t1 = torch.rand(2, 3, 4, 4), torch.rand(2, 5, 4, 4)
    s2, t2 = torch.rand(2, 3, 2, 2), torch.rand(2, 7, 4, 4)  # second pair: teacher map is larger
    expected_1 = (attention_map(s1) - attention_map(t1)).pow(2).mean()
    t2_energy = F.avg_pool2d(t2.pow(2).mean(1, keepdim=True), 2).squeeze(1)
    t2_map = F.normalize(t2_energy.flatten(1), dim=1)
    expected_2 = (attention_map(s2) - t2_map).pow(2).mean()
    assert attention_transfer([s1], [t1]).item() == pytest.approx(expected_1.item(), rel=1e-5)
    assert attention_transfer([s1, s2], [t1, t2]).item() == pytest.approx((expected_1 + expected_2).item(), rel=1e-5)
    # Order of the larger map does not matter; identical maps cost nothing.
    assert attention_transfer([t2], [s2]).item() == pytest.approx(expected_2.item(), rel=1e-5)
    assert attention_transfer([s1], [s1 * 3]).item() == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ValueError, match="pairs layers"):
        attention_transfer([s1], [t1, t2])


# -- the trainer's optional attention-transfer term (ZSKT) ---------------------------------------------
def _distiller(attention, **kw):
    from nets import TinyBNNet, calibrated_bn_net
    from datafree.distill.trainer import Distiller
    from datafree.synthesizers import Augment, NoiseSynthesizer
    from datafree.teachers import freeze

    options = dict(device=torch.device("cpu"), num_classes=4, input_size=(3, 8, 8), rounds=1, student_steps=2,
                   batch_size=16, replay=0.0, amp=False, progress=False, augment=Augment(jitter=0, flip=False))
    options.update(kw)
    return Distiller.from_options(freeze(calibrated_bn_net()), TinyBNNet(), NoiseSynthesizer(batch_size=16), attention=attention, **options)


LAYERS = {"teacher_layers": ["features.2", "features.5"], "student_layers": ["features.2", "features.5"]}


def test_trainer_adds_weighted_attention_transfer():
    from datafree.synthesizers import FeatureCapture

    d = _distiller({"weight": 250.0, **LAYERS}, lr=1e-12)  # (almost) no update: the loss can be recomputed after it
    torch.manual_seed(5)
    loss = d._step(*d.source.next())[0].item()  # the total, then each term
    torch.manual_seed(5)
    x = d.source.synthesizer.sample(16)
    with FeatureCapture(d.teacher, LAYERS["teacher_layers"]) as t, FeatureCapture(d.student, LAYERS["student_layers"]) as s:
        kd = d.loss(d.student(x), d.teacher(x))
        at = attention_transfer(s.features, t.features)
    assert at.item() > 0
    assert loss == pytest.approx((kd + 250.0 * at).item(), rel=1e-5)
    hooks = sum(len(m._forward_hooks) for net in (d.teacher, d.student) for m in net.modules())
    assert hooks == 0
    d.fit()
    assert sum(len(m._forward_hooks) for net in (d.teacher, d.student) for m in net.modules()) == 0


def test_trainer_attention_settings_are_checked():
    from datafree.errors import DatafreeError

    assert _distiller(None).objectives.features == [] and _distiller({"weight": 0.0, **LAYERS}).objectives.features == []
    with pytest.raises(DatafreeError, match="not found"):
        _distiller({"weight": 1.0, "teacher_layers": ["features.2"], "student_layers": ["layer9"]})
    with pytest.raises(DatafreeError, match="equally long"):
        _distiller({"weight": 1.0, "teacher_layers": ["features.2"], "student_layers": ["features.2", "features.5"]})
    with pytest.raises(DatafreeError, match="trainer.attention.weight must be a number >= 0"):
        _distiller({"weight": -1.0, **LAYERS})
