"""Feature terms over named layers: names checked, shapes probed, adapters where channels differ."""
import pytest
import torch
from torch import nn

from nets import TinyBNNet, calibrated_bn_net
from datafree.distill.features import FeatureTerm, build_feature_terms, taps
from datafree.distill.trainer import Distiller
from datafree.errors import DatafreeError
from datafree.synthesizers import Augment, NoiseSynthesizer
from datafree.teachers import Normalized, freeze

CPU = torch.device("cpu")
SIZE = (3, 8, 8)


class WideStudent(TinyBNNet):
    """Same layout as TinyBNNet with other channel counts (12, 24): hints need adapters."""

    def __init__(self, num_classes: int = 4):
        super().__init__(num_classes)
        self.features = nn.Sequential(
            nn.Conv2d(3, 12, 3, padding=1), nn.BatchNorm2d(12), nn.ReLU(),
            nn.Conv2d(12, 24, 3, padding=1), nn.BatchNorm2d(24), nn.ReLU(),  # no stride: 8x8 vs the teacher's 4x4
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.head = nn.Linear(24, num_classes)


def _pair():
    teacher = freeze(Normalized(calibrated_bn_net(), [0.5] * 3, [0.5] * 3))
    return teacher, Normalized(WideStudent(), [0.5] * 3, [0.5] * 3)


def test_hint_adapters_where_channels_differ_and_names_of_the_users_network():
    teacher, student = _pair()
    # "features.2" is the user's name; the wrapper's own "model.features.5" is accepted too.
    term = FeatureTerm("hint", teacher, student, weight=2.0, teacher_layers=["features.2", "model.features.5"],
                       student_layers=["features.2", "features.5"], input_size=SIZE, device=CPU)
    assert [type(a).__name__ for a in term.adapters] == ["Conv2d", "Conv2d"]
    assert term.adapters[0].weight.shape == (8, 12, 1, 1) and term.adapters[1].weight.shape == (16, 24, 1, 1)
    x = torch.rand(4, *SIZE)
    with taps([term], "teacher"):
        teacher(x)
    with taps([term], "student"):
        student(x)
    loss = term.loss()
    loss.backward()
    assert loss.item() > 0 and term.adapters[0].weight.grad is not None
    assert term.teacher_taps.features == [None, None]  # released after use
    assert sum(len(m._forward_hooks) for net in (teacher, student) for m in net.modules()) == 0


def test_flat_features_get_a_linear_adapter_and_equal_channels_none():
    teacher, student = _pair()
    term = FeatureTerm("hint", teacher, student, weight=1.0, teacher_layers=["features.7", "features.0"],
                       student_layers=["features.7", "features.0"], input_size=SIZE, device=CPU)
    assert isinstance(term.adapters[0], nn.Linear) and term.adapters[0].weight.shape == (16, 24)
    assert isinstance(term.adapters[1], nn.Conv2d)  # 8 vs 12 channels
    same = FeatureTerm("hint", teacher, freeze(Normalized(TinyBNNet(), [0.5] * 3, [0.5] * 3)), weight=1.0,
                       teacher_layers=["features.2"], student_layers=["features.2"], input_size=SIZE, device=CPU)
    assert isinstance(same.adapters[0], nn.Identity)


def test_unmatchable_or_unknown_layers_are_refused_before_work():
    teacher, student = _pair()
    with pytest.raises(DatafreeError, match=r"student layer\(s\) \['features.22'\] not found in WideStudent.*features.2"):
        FeatureTerm("hint", teacher, student, weight=1.0, teacher_layers=["features.2"], student_layers=["features.22"],
                    input_size=SIZE, device=CPU)
    with pytest.raises(DatafreeError, match="hint features cannot be matched between teacher features.7 .* student features.2"):
        FeatureTerm("hint", teacher, student, weight=1.0, teacher_layers=["features.7"], student_layers=["features.2"],
                    input_size=SIZE, device=CPU)
    with pytest.raises(DatafreeError, match="attention transfer needs convolutional feature maps"):
        FeatureTerm("attention", teacher, student, weight=1.0, teacher_layers=["head"], student_layers=["head"],
                    input_size=SIZE, device=CPU)
    assert build_feature_terms(teacher, student, SIZE, CPU, attention=None, hint={"weight": 0}) == []


def test_trainer_trains_hint_adapters_with_the_student():
    teacher, student = _pair()
    hint = {"weight": 1.0, "teacher_layers": ["features.5"], "student_layers": ["features.5"]}
    distiller = Distiller.from_options(teacher, student, NoiseSynthesizer(batch_size=8), device=CPU, num_classes=4, input_size=SIZE,
                                       rounds=2, student_steps=2, batch_size=8, amp=False, progress=False, hint=hint,
                                       augment=Augment(jitter=0, flip=False))
    adapter = distiller.objectives.features[0].adapters[0]
    optimised = {id(p) for group in distiller.optimizer.param_groups for p in group["params"]}
    assert id(adapter.weight) in optimised
    before = adapter.weight.detach().clone()
    distiller.fit()
    assert not torch.equal(before, adapter.weight)


def test_pair_weights_weigh_each_layer_pair():
    """weight * sum of pair_weight * loss(pair), by hand from the captured features."""
    import torch.nn.functional as F

    from datafree.distill.relations import similarity_preserving

    teacher, student = _pair()
    x = torch.rand(4, *SIZE)
    expected = {}
    for kind, layers in (("hint", ["features.2", "features.5"]), ("similarity", ["features.5", "features.7"])):
        term = FeatureTerm(kind, teacher, student, weight=3.0, teacher_layers=layers, student_layers=layers,
                           pair_weights=[2.0, 0.5], input_size=SIZE, device=CPU)
        with taps([term], "teacher"), torch.no_grad():
            teacher(x)
        with taps([term], "student"), torch.no_grad():
            student(x)
        t, s = term.teacher_taps.features, term.student_taps.features
        if kind == "hint":  # the adapters map the student's 12 and 24 channels to the teacher's 8 and 16; 8x8 pools to 4x4
            pairs = [F.mse_loss(term.adapters[0](s[0]), t[0]),
                     F.mse_loss(F.adaptive_avg_pool2d(term.adapters[1](s[1]), 4), t[1])]
        else:
            pairs = [similarity_preserving(s[0], t[0]), similarity_preserving(s[1], t[1])]
        expected[kind] = 3.0 * (2.0 * pairs[0] + 0.5 * pairs[1])
        with torch.no_grad():
            assert term.loss().item() == pytest.approx(expected[kind].item(), rel=1e-5), kind
    with pytest.raises(DatafreeError, match=r"trainer.attention.pair_weights gives one number >= 0 per layer pair"):
        FeatureTerm("attention", teacher, student, weight=1.0, teacher_layers=["features.2"],
                    student_layers=["features.2"], pair_weights=[-1.0], input_size=SIZE, device=CPU)
