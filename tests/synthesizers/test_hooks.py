import pytest
import torch
from torch import nn

from nets import TinyBNNet
from datafree.errors import DatafreeError
from datafree.models import create_model
from datafree.synthesizers.hooks import BatchNormStatistics, FeatureCapture


def _hook_count(model):
    return sum(len(m._forward_hooks) for m in model.modules())


def test_loss_is_zero_when_batch_matches_running_stats():
    net = TinyBNNet().eval()
    bn = net.features[1]
    with BatchNormStatistics(net) as stats:
        x = torch.randn(64, 3, 8, 8)
        net(x)
        # Make the first layer's running stats equal to this batch's, then re-run: its term vanishes.
        with torch.no_grad():
            first_in = net.features[0](x)
            bn.running_mean.copy_(first_in.mean((0, 2, 3)))
            bn.running_var.copy_(first_in.var((0, 2, 3), unbiased=False))
        net(x)
        assert stats._losses[0].item() == pytest.approx(0.0, abs=1e-5)
        assert stats._losses[1].item() > 0


def test_first_multiplier_weights_the_first_layer():
    net = TinyBNNet().eval()
    x = torch.randn(16, 3, 8, 8)
    with BatchNormStatistics(net, first_multiplier=1.0) as a:
        net(x)
        plain = a.loss().item()
        first = a._losses[0].item()
    with BatchNormStatistics(net, first_multiplier=10.0) as b:
        net(x)
        assert b.loss().item() == pytest.approx(plain + 9 * first, rel=1e-5)


def test_hooks_are_removed_on_exit_and_on_error():
    net = TinyBNNet().eval()
    with BatchNormStatistics(net):
        assert _hook_count(net) == 2
    assert _hook_count(net) == 0
    with pytest.raises(RuntimeError, match="boom"):
        with BatchNormStatistics(net):
            raise RuntimeError("boom")
    assert _hook_count(net) == 0
    with pytest.raises(RuntimeError, match="boom"):
        with FeatureCapture(net, ["features.2"]):
            raise RuntimeError("boom")
    assert _hook_count(net) == 0


def test_teacher_without_batchnorm_is_refused():
    with pytest.raises(DatafreeError, match="no BatchNorm layer"):
        BatchNormStatistics(create_model("nobn_cnn", num_classes=10))


def test_feature_capture_records_and_names_unknown_layers():
    net = TinyBNNet().eval()
    with FeatureCapture(net, ["features.2", "head"]) as cap:
        out = net(torch.randn(2, 3, 8, 8))
    assert cap.features[0].shape == (2, 8, 8, 8)
    assert torch.equal(cap.features[1], out)
    with pytest.raises(DatafreeError, match="not found"):
        FeatureCapture(net, ["nope"])
    assert isinstance(net.head, nn.Linear)
