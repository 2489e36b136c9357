"""The fast synthesizer: the contract every synthesizer keeps, and its own parts (noisy layer, BN momentum)."""
import pytest
import torch

from datafree.models import create_model
from datafree.synthesizers import FastSynthesizer
from contract import SynthesizerContract
from nets import TinyBNNet


def _bind(synth, teacher, student=None):
    synth.bind(teacher, student or TinyBNNet(), 4, (3, 8, 8), torch.device("cpu"))
    return synth


def _fast(**kw):
    options = dict(batch_size=16, g_steps=4, latent_dim=8, base_width=8, amp=False)
    options.update(kw)
    return FastSynthesizer(**options)


class TestFast(SynthesizerContract):
    bad_settings = [(dict(g_steps=0), "g_steps"), (dict(lr=0.0), "lr"), (dict(bn_momentum=1.0), "bn_momentum"),
                    (dict(bn_weight=0.0, ce_weight=0.0, adv_weight=0.0), "nothing would be optimised"),
                    (dict(jitter=-1), "jitter"), (dict(bn_weight=-1.0), ">= 0"),
                    (dict(synthesis_size=6), "synthesis_size"), (dict(synthesis_size=True), "synthesis_size"),
                    (dict(bn_distance="kl"), "bn_distance must be raw")]

    def make(self, **overrides):
        return _fast(**overrides)


def test_losses_fall_over_rounds_and_images_are_pixels(bn_teacher):
    synth = _bind(_fast(adv_weight=0.0, ce_weight=0.0, bn_momentum=0.0, lr=2e-2), bn_teacher)
    losses = []
    for _ in range(12):
        batch = synth.synthesize()
        losses.append(synth.last_losses["bn"].item())
    # The persistent body learns across rounds, although each round's input layer is new.
    assert max(losses[-3:]) < 0.8 * losses[0]
    assert batch.images.shape == (16, 3, 8, 8) and not batch.images.requires_grad
    assert 0 <= batch.images.min() and batch.images.max() <= 1
    assert sorted(batch.targets.tolist()) == sorted([k % 4 for k in range(16)])  # class-balanced


def test_each_round_draws_a_new_noisy_layer_and_keeps_the_body(bn_teacher):
    synth = _bind(_fast(), bn_teacher)
    synth.synthesize()
    noisy, body = synth.noisy.weight.clone(), synth.generator.l1.weight.clone()
    synth._new_round()
    assert not torch.allclose(synth.noisy.weight, noisy) and torch.equal(synth.generator.l1.weight, body)
    moments = [v for p in synth.noisy.parameters() for k, v in synth.optimizer.state[p].items() if k != "step"]
    assert moments and all(not v.any() for v in moments)  # Adam moments of the old layer cleared


def test_bn_momentum_blends_with_earlier_batches(bn_teacher):
    synth = _bind(_fast(bn_momentum=0.9, adv_weight=0.0, ce_weight=0.0), bn_teacher)
    assert synth._bn._blend.item() == 0.0  # the first batch is matched alone
    synth.synthesize()
    assert synth._bn._blend.item() == pytest.approx(0.9)
    assert all(mean.abs().sum() > 0 for mean, _ in synth._bn._average)


def test_without_the_batchnorm_prior_a_teacher_without_batchnorm_serves():
    _bind(_fast(bn_weight=0.0), create_model("nobn_cnn", num_classes=4))


def test_a_halved_batch_gets_new_buffers(bn_teacher):
    """The trainer halves synthesizer.batch_size after an out-of-memory error: the next round uses the new size."""
    synth = _bind(_fast(), bn_teacher)
    synth.synthesize()
    synth.batch_size = 8
    assert synth.synthesize().images.shape[0] == 8


def test_a_smaller_synthesis_size_is_upsampled_to_the_teacher_input(bn_teacher):
    torch.manual_seed(0)
    teacher = create_model("microcnn", num_classes=4).eval()
    synth = FastSynthesizer(batch_size=8, g_steps=2, latent_dim=8, base_width=8, amp=False, synthesis_size=8)
    synth.bind(teacher, TinyBNNet(), 4, (3, 16, 16), torch.device("cpu"))
    assert synth.generator(synth.noisy(synth._code[:1])).shape[-2:] == (8, 8)  # the generator's own size
    batch = synth.synthesize()
    assert batch.images.shape == (8, 3, 16, 16) and 0 <= batch.images.min() and batch.images.max() <= 1
    with torch.no_grad():  # what the teacher sees is the generator's image, bilinearly upsampled
        code = synth._code[:2]
        expected = torch.nn.functional.interpolate(synth.generator(synth.noisy(code)), size=(16, 16), mode="bilinear")
        assert torch.allclose(synth._generate(code), expected)
    too_large = FastSynthesizer(batch_size=8, g_steps=2, latent_dim=8, base_width=8, amp=False, synthesis_size=32)
    with pytest.raises(Exception, match="synthesis_size=32 is larger than the teacher's 16x16 input"):
        too_large.bind(teacher, TinyBNNet(), 4, (3, 16, 16), torch.device("cpu"))


def test_a_relative_bn_distance_runs_a_round(bn_teacher):
    torch.manual_seed(0)
    synth = _bind(_fast(bn_distance="relative", bn_momentum=0.0), bn_teacher)
    assert synth._bn.distance == "relative"
    batch = synth.synthesize()
    assert batch.images.shape == (16, 3, 8, 8) and torch.isfinite(synth.last_losses["bn"])


def test_the_log_says_what_the_generator_makes_and_how_the_batchnorm_prior_is_measured(bn_teacher, caplog):
    teacher = create_model("microcnn", num_classes=4).eval()
    with caplog.at_level("INFO", logger="datafree"):
        FastSynthesizer(batch_size=8, g_steps=2, latent_dim=8, base_width=8, amp=False, synthesis_size=8,
                        bn_distance="relative", bn_weight=400.0).bind(teacher, TinyBNNet(), 4, (3, 16, 16),
                                                                      torch.device("cpu"))
        _bind(_fast(bn_weight=0.0), bn_teacher)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("synthesizer:")]
    assert lines == [
        "synthesizer: the generator makes 8x8 images, resized to the teacher's 16x16; "
        "BatchNorm prior: relative distance x 400 over 2 BatchNorm layers",
        "synthesizer: the generator makes 8x8 images; BatchNorm prior: off (bn_weight=0)",
    ]
