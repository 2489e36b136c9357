import pytest
import torch

from contract import SynthesizerContract, hook_count
from nets import TinyBNNet, calibrated_bn_net
from datafree.errors import DatafreeError
from datafree.synthesizers import Augment, DeepInversion
from datafree.ops.hooks import BatchNormStatistics
from datafree.synthesizers.priors import total_variation
from datafree.teachers import Normalized


def _bind(synth, teacher, student=None, size=8):
    synth.bind(teacher, student or TinyBNNet(), num_classes=4, input_size=(3, size, size), device=torch.device("cpu"))
    return synth


class TestDeepInversion(SynthesizerContract):
    bad_settings = [(dict(tv_l2_weight=-1), ">= 0"),
                     (dict(bn_weight=0, ce_weight=0, tv_l2_weight=0, adi_weight=0), "every DeepInversion loss weight is 0")]

    def make(self, **overrides):
        return DeepInversion(**{**dict(batch_size=4, iterations=3, adi_weight=1.0, amp=False), **overrides})


def test_bn_statistics_loss_falls_during_synthesis(bn_teacher):
    noise = torch.rand(32, 3, 8, 8)
    with BatchNormStatistics(bn_teacher) as stats:
        bn_teacher(noise)
        before = stats.loss().item()
    synth = _bind(DeepInversion(batch_size=32, iterations=150, lr=0.1, bn_weight=1.0, ce_weight=0.0,
                                tv_l2_weight=0.0, jitter=0, amp=False), bn_teacher)
    batch = synth.synthesize()
    with BatchNormStatistics(bn_teacher) as stats:
        bn_teacher(batch.images)
        after = stats.loss().item()
    assert after < 0.5 * before
    assert batch.images.min() >= 0 and batch.images.max() <= 1
    assert batch.images.shape == (32, 3, 8, 8) and not batch.images.requires_grad
    assert hook_count(bn_teacher) == 0


def test_cross_entropy_steers_to_targets(bn_teacher):
    with torch.no_grad():  # a random tiny head can barely separate classes; sharpen it
        bn_teacher.head.weight.mul_(10)
    synth = _bind(DeepInversion(batch_size=16, iterations=150, lr=0.1, bn_weight=0.01, ce_weight=1.0, amp=False), bn_teacher)
    batch = synth.synthesize()
    with torch.no_grad():
        agree = (bn_teacher(batch.images).argmax(1) == batch.targets).float().mean().item()
    on_noise = (bn_teacher(torch.rand(16, 3, 8, 8)).argmax(1) == batch.targets).float().mean().item()
    # This random teacher can never output one of its 4 classes, so 0.75 is the ceiling.
    assert agree >= 0.7 and agree > on_noise + 0.3
    assert torch.bincount(batch.targets, minlength=4).tolist() == [4, 4, 4, 4]  # balanced classes


def test_gradients_reach_pixels_through_augmentations():
    import kornia.augmentation as K

    aug = Augment(jitter=2, flip=True, extra=[K.ColorJitter(0.2, 0.2, 0.2, 0.05, p=1.0),
                                              K.RandomAffine(degrees=10, p=1.0)])
    pixels = torch.rand(4, 3, 8, 8, requires_grad=True)
    out = aug(pixels)
    assert out.shape == pixels.shape and out.min() >= 0 and out.max() <= 1
    net = TinyBNNet().eval()
    with BatchNormStatistics(net) as stats:
        net(out)
        (grad,) = torch.autograd.grad(stats.loss(), [pixels])
    assert grad.abs().sum() > 0 and torch.isfinite(grad).all()


def test_adi_term_rewards_disagreement_and_touches_no_parameter_grads(bn_teacher):
    student = TinyBNNet()
    synth = _bind(DeepInversion(batch_size=8, iterations=5, adi_weight=1.0, amp=False), bn_teacher, student)
    student.train()
    synth.synthesize()
    assert student.training  # mode restored
    assert all(p.grad is None for p in student.parameters())
    assert all(p.grad is None for p in bn_teacher.parameters())
    assert "adi" in synth.last_losses and 0 <= synth.last_losses["adi"].item() <= 1


def test_total_variation_is_the_papers_prior():
    images = torch.tensor([[0.0, 1.0], [2.0, 4.0]]).view(1, 1, 2, 2)
    # Differences: horizontal (1, 2), vertical (2, 3), diagonal 4, anti-diagonal 1.
    assert total_variation(images, p=1).item() == pytest.approx(1.5 + 2.5 + 4 + 1)
    assert total_variation(images, p=2).item() == pytest.approx(5 ** 0.5 + 13 ** 0.5 + 4 + 1)
    # A norm over the whole batch, not a mean: two copies of the batch weigh sqrt(2) as much.
    assert total_variation(images.repeat(2, 1, 1, 1), p=2).item() == pytest.approx(2 ** 0.5 * (5 ** 0.5 + 13 ** 0.5 + 5))


def test_image_priors_act_on_the_teachers_normalised_input(bn_teacher):
    # As in the paper, on what the network sees: here (pixels - 0.5) / 0.25.
    teacher = Normalized(bn_teacher, mean=(0.5,) * 3, std=(0.25,) * 3)
    synth = _bind(DeepInversion(batch_size=4, iterations=1, bn_weight=0.0, ce_weight=0.0, tv_l1_weight=0.1,
                                tv_l2_weight=0.01, l2_weight=0.001, jitter=0, flip=False, amp=False), teacher)
    pixels = torch.rand(4, 3, 8, 8)
    _, parts = synth._objective(pixels, torch.zeros(4, dtype=torch.long), None)
    network_input = (pixels - 0.5) / 0.25
    assert parts["tv_l1"].item() == pytest.approx(0.1 * total_variation(network_input, p=1).item())
    assert parts["tv_l2"].item() == pytest.approx(0.01 * total_variation(network_input, p=2).item())
    assert parts["l2"].item() == pytest.approx(0.001 * network_input.flatten().norm().item())  # one norm, whole batch


def test_total_variation_at_the_demo_weight_smooths_the_images(bn_teacher):
    def synthesized_tv(weight):
        torch.manual_seed(0)
        synth = _bind(DeepInversion(batch_size=64, iterations=60, lr=0.1, bn_weight=1.0, tv_l2_weight=weight,
                                    amp=False), bn_teacher, size=16)
        return total_variation(synth.synthesize().images, p=2).item()

    # Not inert (a per-pixel mean of squares at such weights changed nothing): the images come out smoother.
    assert synthesized_tv(4e-3) < 0.8 * synthesized_tv(0.0)
