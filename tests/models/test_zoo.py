import warnings

import pytest
import torch
from torch import nn

from datafree.errors import DatafreeError
from datafree.models import create_model, list_models

# Exact counts for 10 classes, computed from the standard architectures (kuangliu CIFAR ResNet/VGG,
# Zagoruyko WRN, torchvision-equivalent MobileNetV2); asserted within 2% to tolerate harmless variants.
EXPECTED_PARAMS = {
    "resnet18": 11_173_962,
    "resnet34": 21_282_122,
    "wrn16_1": 175_066,
    "wrn16_2": 691_674,
    "wrn40_1": 563_930,
    "wrn40_2": 2_243_546,
    "vgg11_bn": 9_231_114,
    "mobilenetv2": 2_236_682,
    "tinycnn": 94_762,
    "microcnn": 5_466,
    "nobn_cnn": 5_418,
}
CLASSIFIERS = sorted(EXPECTED_PARAMS)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_registry_lists_every_model():
    # Superset: other modules may register more models later.
    assert set(CLASSIFIERS) | {"dcgan_generator"} <= set(list_models())
    assert list_models() == sorted(list_models())


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_classifier_forward_shapes(name):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    for num_classes in (10, 100):
        model = create_model(name, num_classes=num_classes).eval()
        with torch.no_grad():
            out = model(x)
        assert out.shape == (2, num_classes)
        assert torch.isfinite(out).all()
        assert model.num_classes == num_classes


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_parameter_counts(name):
    expected = EXPECTED_PARAMS[name]
    assert abs(n_params(create_model(name, num_classes=10)) - expected) <= 0.02 * expected


def test_parameter_counts_exact_for_reference_architectures():
    # Pins the exact architecture so that accidental changes (a bias, a shortcut) are noticed.
    for name in ("resnet18", "wrn40_2", "wrn16_1", "vgg11_bn", "mobilenetv2"):
        assert n_params(create_model(name)) == EXPECTED_PARAMS[name], name


@pytest.mark.parametrize("name", ["tinycnn", "microcnn", "nobn_cnn"])
def test_tiny_models_take_small_and_grey_inputs(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=5, in_channels=1).eval()
    for size in (8, 28, 64):
        assert model(torch.randn(2, 1, size, size)).shape == (2, 5)


def test_tiny_models_are_small():
    assert 50_000 <= n_params(create_model("tinycnn")) <= 150_000
    assert n_params(create_model("microcnn")) <= 10_000


def test_nobn_cnn_has_no_batchnorm_and_others_do():
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in create_model("nobn_cnn").modules())
    for name in ("tinycnn", "microcnn", "wrn16_1"):
        assert any(isinstance(m, nn.BatchNorm2d) for m in create_model(name).modules())


@pytest.mark.parametrize("name", ["resnet18", "wrn16_1", "vgg11_bn", "mobilenetv2"])
def test_larger_inputs_work(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=7).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 7)


def test_wrn_accepts_dropout():
    torch.manual_seed(0)
    model = create_model("wrn16_1", dropout=0.3).train()
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_unknown_name_lists_choices_and_suggests_close_match():
    with pytest.raises(DatafreeError) as err:
        create_model("resnet19")
    message = str(err.value)
    assert "resnet19" in message
    assert "Did you mean 'resnet18'" in message
    for name in CLASSIFIERS:
        assert name in message


@pytest.mark.parametrize("bad", [0, -3])
def test_num_classes_must_be_positive(bad):
    with pytest.raises(DatafreeError, match="num_classes"):
        create_model("resnet18", num_classes=bad)


def test_unknown_keyword_is_a_datafree_error():
    with pytest.raises(DatafreeError, match="widen"):
        create_model("resnet18", widen=2)


@pytest.mark.parametrize("shape", [(8, 16, 10, 10), (3, 4, 7, 5)])
def test_small_cnn_pooling_is_max_pool2d_bit_for_bit(shape):
    """The tiny CNNs' CPU pooling (channels-last kernel, NCHW backward) against F.max_pool2d: same outputs, same
    gradients, ties and odd sizes included (integer-valued inputs tie often)."""
    from datafree.models.tiny import MaxPool2x2

    x = torch.randint(0, 3, shape).float().requires_grad_()
    ours, reference = MaxPool2x2()(x), nn.functional.max_pool2d(x, 2)
    assert torch.equal(ours, reference)
    weights = torch.randn_like(reference)
    (ours_grad,) = torch.autograd.grad((ours * weights).sum(), [x])
    (reference_grad,) = torch.autograd.grad((reference * weights).sum(), [x])
    assert torch.equal(ours_grad, reference_grad)
    model = create_model("microcnn", num_classes=10).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.script is deprecated, but users may still script a student
        scripted = torch.jit.script(model)
    images = torch.rand(2, 3, 8, 8)
    assert torch.equal(scripted(images), model(images))
