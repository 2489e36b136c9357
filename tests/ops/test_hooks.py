import pytest
import torch
from torch import nn

from nets import TinyBNNet
from datafree.errors import DatafreeError
from datafree.models import create_model
from datafree.ops.hooks import BatchNormStatistics, FeatureCapture


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


@pytest.mark.parametrize("shape, channels_last", [
    ((3, 4, 5, 6), False), ((3, 4, 5, 6), True), ((6, 4), False), ((3, 4, 7), False), ((2, 4, 3, 2, 2), False),
    ((1, 4, 1, 1), False),  # one value per channel: variance 0
])
def test_channel_stats_match_var_mean_in_value_and_gradient(shape, channels_last):
    from datafree.ops.hooks import channel_stats

    x = (torch.randn(*shape, dtype=torch.double) * 3 + 5)  # off zero: the variance is not the mean square
    x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
    x.requires_grad_(True)
    g_mean, g_var = torch.randn(4, dtype=torch.double), torch.randn(4, dtype=torch.double)
    mean, var = channel_stats(x)
    (grad,) = torch.autograd.grad((mean * g_mean).sum() + (var * g_var).sum(), x)
    ref_var, ref_mean = torch.var_mean(x, dim=[0, *range(2, x.dim())], correction=0)
    (ref_grad,) = torch.autograd.grad((ref_mean * g_mean).sum() + (ref_var * g_var).sum(), x)
    assert mean.dtype == torch.float32  # statistics in float32 whatever the input
    assert torch.allclose(mean.double(), ref_mean, rtol=1e-6, atol=1e-6)
    assert torch.allclose(var.double(), ref_var, rtol=1e-5, atol=1e-6)
    assert torch.allclose(grad, ref_grad, rtol=1e-5, atol=1e-7)
    (only_mean,) = torch.autograd.grad(channel_stats(x)[0].sum(), x)  # one output unused: its gradient is None
    assert torch.allclose(only_mean, torch.full_like(x, 4 / x.numel()))


def test_statistics_momentum_matches_the_average_not_each_batch():
    net = TinyBNNet().eval()
    stats = BatchNormStatistics(net, momentum=0.5)
    with stats:
        net(torch.randn(32, 3, 8, 8))
        alone = stats.loss().item()
        stats.update_average()  # the first batch becomes the average
        net(torch.randn(32, 3, 8, 8) * 3)
        blended = stats.loss().item()
    with BatchNormStatistics(net) as plain:
        net(torch.randn(32, 3, 8, 8) * 3)
        unblended = plain.loss().item()
    assert stats._blend.item() == 0.5 and alone > 0
    assert blended < unblended  # half of the distance is carried by the (closer) first batch
    with pytest.raises(DatafreeError, match="momentum"):
        BatchNormStatistics(net, momentum=1.0)


def _scaled_copy(net: TinyBNNet, factor: torch.Tensor) -> TinyBNNet:
    """The same network with the first BatchNorm's input scaled per channel by ``factor`` (its convolution's
    weights and bias scaled, its running statistics likewise): the network's output is unchanged."""
    copy = TinyBNNet().eval()
    copy.load_state_dict(net.state_dict())
    conv, bn = copy.features[0], copy.features[1]
    with torch.no_grad():
        conv.weight.mul_(factor.view(-1, 1, 1, 1))
        if conv.bias is not None:
            conv.bias.mul_(factor)
        bn.running_mean.mul_(factor)
        bn.running_var.mul_(factor**2)
    return copy


def test_the_relative_distance_does_not_depend_on_the_teachers_scale():
    """A teacher whose features are 1000 times larger gives a raw distance about 1000 times larger (the
    fast recipe's fixed weight then means something else: docs/benchmarks.md), and the same relative one."""
    torch.manual_seed(0)
    net = TinyBNNet().eval()
    with torch.no_grad():
        net.features[1].running_var.uniform_(0.5, 2.0)  # statistics that are not the batch's
        net.features[1].running_mean.uniform_(-1.0, 1.0)
    scaled = _scaled_copy(net, torch.full((net.features[1].num_features,), 1000.0))
    x = torch.rand(32, 3, 8, 8)
    first = {}
    for distance in ("raw", "relative"):
        for name, model in (("plain", net), ("scaled", scaled)):
            with BatchNormStatistics(model, distance=distance) as stats:
                assert torch.allclose(model(x), net(x), rtol=1e-3, atol=1e-3)
                first[distance, name] = stats._losses[0].item()
    assert first["raw", "scaled"] > 500 * first["raw", "plain"]
    assert first["relative", "scaled"] == pytest.approx(first["relative", "plain"], rel=1e-3)


def test_the_relative_distance_is_a_mean_over_layers_of_channel_rms():
    torch.manual_seed(0)
    net = TinyBNNet().eval()
    x = torch.randn(16, 3, 8, 8)
    with BatchNormStatistics(net, distance="relative") as stats:
        net(x)
        layers = [layer for layer in net.modules() if isinstance(layer, nn.BatchNorm2d)]
        assert stats.loss().item() == pytest.approx(sum(v.item() for v in stats._losses) / len(layers), rel=1e-6)
        first_in = net.features[0](x)
        bn = net.features[1]
        mean, var = first_in.mean((0, 2, 3)), first_in.var((0, 2, 3), unbiased=False)
        scale = bn.running_var + bn.eps
        expected = (((mean - bn.running_mean) / scale.sqrt()).norm() + ((var - bn.running_var) / scale).norm()) \
            / bn.num_features ** 0.5
        assert stats._losses[0].item() == pytest.approx(expected.item(), rel=1e-4)
    with pytest.raises(DatafreeError, match="must be raw .* or relative"):
        BatchNormStatistics(net, distance="kl")
