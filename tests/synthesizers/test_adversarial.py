import copy

import pytest
import torch
from hydra import compose, initialize_config_module
from hydra.utils import instantiate
from torch import nn

from contract import SynthesizerContract
from nets import TinyBNNet
from datafree.distill.losses import LogitL1Loss
from datafree.ops.divergences import logit_l1
from datafree.errors import DatafreeError
from datafree.models import create_model
from datafree.synthesizers import GeneratorSynthesizer
from datafree.teachers import Normalized, freeze

CPU = torch.device("cpu")


def _generator(image_size=8, conditional=False, latent_dim=16):
    return create_model("dcgan_generator", num_classes=4, latent_dim=latent_dim, image_size=image_size,
                        channels=3, base_width=8, conditional=conditional)


def _synth(teacher, student=None, *, generator=None, bind=True, **kw):
    options = dict(latent_dim=16, batch_size=32, lr=1e-2, amp=False)
    options.update(kw)
    synth = GeneratorSynthesizer(generator=generator or _generator(conditional=options.get("conditional", False)),
                                 **options)
    if bind:
        synth.bind(freeze(teacher), student or TinyBNNet(), num_classes=4, input_size=(3, 8, 8), device=CPU)
    return synth


class TestGenerator(SynthesizerContract):
    """DFQ's settings: every hook-based prior and the adversary on, so that the contract sees them all."""

    bad_settings = [
        (dict(latent_dim=0), "latent_dim"),
        (dict(bn_weight=-1.0), "bn_weight"),
        (dict(adv_weight=-0.5), "adv_weight"),
        (dict(batch_size=0), "batch_size"),
        (dict(g_steps=0), "g_steps"),
        (dict(lr=0.0), "lr"),
        (dict(adv_weight=0.0, bn_weight=0.0, act_weight=0.0, ie_weight=0.0), "every generator loss weight is 0"),
        (dict(adv_loss="wasserstein"), "adv_loss"),
        (dict(lifecycle="sometimes"), "lifecycle"),
        (dict(lifecycle="reinit"), "reinit_every >= 1"),
        (dict(reinit_every=3), "no effect with lifecycle='keep'"),
        (dict(meta_lr=0.1), "clone_per_batch"),
        (dict(ce_weight=1.0), "conditional=true"),
        (dict(generator=_generator(latent_dim=8)), "latent_dim=8"),
    ]

    def make(self, **overrides):
        options = dict(latent_dim=16, batch_size=8, lr=1e-2, g_steps=2, amp=False, bn_weight=1.0, act_weight=0.1,
                       ie_weight=1.0, adv_loss="kl")
        options.update(overrides)
        if "generator" not in options:
            options["generator"] = _generator(conditional=options.get("conditional", False),
                                              latent_dim=options["latent_dim"] if options["latent_dim"] > 0 else 16)
        return GeneratorSynthesizer(**options)


def _hook_count(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def _params(module):
    return [p.detach().clone() for p in module.parameters()]


def _max_change(before, module):
    return max((a - b).abs().max().item() for a, b in zip(before, module.parameters()))


@torch.no_grad()
def _disagreement(synth, z):
    images = synth.generator(z)
    return logit_l1(synth.student(images), synth.teacher(images)).item()


# -- the adversarial game -----------------------------------------------------------------------------
def test_generator_raises_disagreement_and_student_lowers_it(bn_teacher):
    student = TinyBNNet()
    synth = _synth(bn_teacher, student, adv_loss="l1", g_steps=15)
    z = torch.randn(64, 16)
    student.eval()
    before = _disagreement(synth, z)
    student.train()
    student_before = _params(student)
    batch = synth.synthesize()
    assert student.training  # mode restored
    assert _max_change(student_before, student) == 0 and all(p.grad is None for p in student.parameters())
    assert all(p.grad is None for p in bn_teacher.parameters())
    student.eval()
    raised = _disagreement(synth, z)
    assert raised > 1.2 * before
    assert synth.last_losses["disagreement"] > 0 and synth.last_losses["adv"] < 0
    assert batch.images.shape == (32, 3, 8, 8) and not batch.images.requires_grad
    assert batch.images.min() >= 0 and batch.images.max() <= 1 and batch.targets is None

    student.train()
    optimizer = torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9)
    for _ in range(40):  # DFAD's student step on fresh generator samples
        images = synth.sample(32)
        assert images.shape == (32, 3, 8, 8) and not images.requires_grad
        loss = LogitL1Loss()(student(images), bn_teacher(images))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    student.eval()
    assert _disagreement(synth, z) < 0.7 * raised


@pytest.mark.parametrize("adv_loss", ["kl", "masked_kl", "js"])
def test_every_disagreement_drives_the_generator(bn_teacher, adv_loss):
    # A perturbed copy of the teacher: masked KL needs samples on which the two still agree.
    student = copy.deepcopy(bn_teacher)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(0.3 * p.abs().mean() * torch.randn_like(p))
    synth = _synth(bn_teacher, student, adv_loss=adv_loss, g_steps=1, batch_size=64)
    synth.synthesize()
    first = synth.last_losses["disagreement"].item()
    synth.g_steps = 10  # not many more: masked KL falls again once samples cross to disagreement
    synth.synthesize()
    assert synth.last_losses["disagreement"].item() > first
    assert set(synth.last_losses) == {"adv", "disagreement"}


# -- the priors ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("term", ["bn", "oh", "act", "ie", "ce"])
def test_each_prior_alone_lowers_its_own_term(bn_teacher, term):
    with torch.no_grad():  # a random tiny head barely separates classes; sharpen it so CE/one-hot can move
        bn_teacher.head.weight.mul_(5)
    synth = _synth(bn_teacher, adv_weight=0.0, conditional=term == "ce", g_steps=1, **{f"{term}_weight": 1.0})
    synth.synthesize()
    first = synth.last_losses[term].item()
    assert set(synth.last_losses) == {term}  # no other term computed, no disagreement measured
    synth.g_steps = 30
    synth.synthesize()
    assert synth.last_losses[term].item() < first - 0.05 * abs(first)


def test_zero_weights_register_no_hooks_and_skip_forward_work(bn_teacher):
    seen = {"teacher_hooks": [], "student_calls": 0}
    student = TinyBNNet()
    student.register_forward_pre_hook(lambda m, i: seen.__setitem__("student_calls", seen["student_calls"] + 1))

    def spy(module, inputs):  # counts every hook on the teacher but this one
        seen["teacher_hooks"].append(_hook_count(bn_teacher) - 1)

    handle = bn_teacher.register_forward_pre_hook(spy)
    synth = _synth(bn_teacher, student, adv_weight=0.0, oh_weight=1.0, g_steps=3)
    seen["teacher_hooks"].clear()
    synth.synthesize()
    synth.sample(4)
    assert seen["student_calls"] == 0 and seen["teacher_hooks"] and max(seen["teacher_hooks"]) == 0

    synth = _synth(bn_teacher, student, adv_weight=1.0, bn_weight=1.0, act_weight=1.0, g_steps=2)
    seen["teacher_hooks"].clear()
    synth.synthesize()
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in bn_teacher.modules())
    assert max(seen["teacher_hooks"]) == n_bn + 1 and seen["student_calls"] == 2
    handle.remove()
    assert _hook_count(bn_teacher) == 0


# -- settings and validation ------------------------------------------------------------------------------
def test_generator_size_must_match_the_teacher(bn_teacher):
    with pytest.raises(DatafreeError, match=r"\(3, 16, 16\).*\(3, 8, 8\).*image_size"):
        _synth(bn_teacher, generator=_generator(image_size=16))


def test_teacher_with_nonfinite_logits_is_refused():
    class NaNTeacher(nn.Module):
        def forward(self, x):
            return torch.full((x.shape[0], 4), float("nan"))

    with pytest.raises(DatafreeError, match="not finite"):
        _synth(NaNTeacher())


def test_priors_the_teacher_cannot_serve_are_refused():
    linear_free = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    with pytest.raises(DatafreeError, match="act_weight=0"):
        _synth(linear_free, act_weight=1.0)


def test_builds_a_generator_from_the_teacher_input(bn_teacher):
    synth = GeneratorSynthesizer(latent_dim=8, batch_size=4, amp=False)
    synth.bind(freeze(bn_teacher), TinyBNNet(), num_classes=4, input_size=(3, 8, 8), device=CPU)
    assert (synth.generator.image_size, synth.generator.channels, synth.generator.latent_dim) == (8, 3, 8)
    assert synth.synthesize().images.shape == (4, 3, 8, 8)


def test_conditional_generator_aims_for_balanced_classes(bn_teacher):
    synth = _synth(bn_teacher, conditional=True, ce_weight=1.0, batch_size=8, g_steps=2)
    batch = synth.synthesize()
    assert torch.bincount(batch.targets, minlength=4).tolist() == [2, 2, 2, 2]
    assert "ce" in synth.last_losses and synth.sample(6).shape == (6, 3, 8, 8)


def test_augmentations_run_in_the_generator_step(bn_teacher):
    class Count(nn.Module):
        calls = 0

        def forward(self, x):
            Count.calls += 1
            return x.flip(2)

    synth = _synth(bn_teacher, augment=[Count()], g_steps=3)
    synth.synthesize()
    assert Count.calls == 3


# -- life cycle -------------------------------------------------------------------------------------
def test_reinit_every_k_rounds_replaces_the_weights(bn_teacher):
    synth = _synth(bn_teacher, lr=1e-9, lifecycle="reinit", reinit_every=2, batch_size=8)
    synth.synthesize()
    after_1 = _params(synth.generator)
    synth.synthesize()
    assert _max_change(after_1, synth.generator) < 1e-6  # round 2: only a negligible training step
    after_2 = _params(synth.generator)
    synth.synthesize()  # round 3 starts with a re-initialisation
    assert _max_change(after_2, synth.generator) > 1e-2


def test_reinit_first_layer_changes_only_the_first_layer(bn_teacher):
    synth = _synth(bn_teacher, lr=1e-9, lifecycle="reinit_first_layer", reinit_every=1, batch_size=8)
    synth.synthesize()
    first = [p.detach().clone() for p in synth.generator.l1.parameters()]
    rest = {n: p.detach().clone() for n, p in synth.generator.named_parameters() if not n.startswith("l1.")}
    synth.synthesize()
    assert _max_change(first, synth.generator.l1) > 1e-2
    assert max((p - rest[n]).abs().max().item() for n, p in synth.generator.named_parameters() if n in rest) < 1e-6


def test_clone_per_batch_leaves_the_base_unless_meta_lr(bn_teacher):
    synth = _synth(bn_teacher, clone_per_batch=True, optimize_latent=True, g_steps=3, batch_size=8)
    base = _params(synth.generator)
    batch = synth.synthesize()
    synth.synthesize()
    assert _max_change(base, synth.generator) == 0
    assert synth._active is not synth.generator and synth.sample(4).shape == (4, 3, 8, 8)
    assert batch.images.shape == (8, 3, 8, 8)

    synth = _synth(bn_teacher, clone_per_batch=True, meta_lr=0.5, g_steps=3, batch_size=8)
    base = _params(synth.generator)
    synth.synthesize()
    assert _max_change(base, synth.generator) > 0


# -- the recipes, through the trainer ---------------------------------------------------------------------
def _demo_nets():
    mean, std = (0.5,) * 3, (0.25,) * 3
    torch.manual_seed(3)
    teacher = freeze(Normalized(create_model("tinycnn", num_classes=10), mean, std))
    return teacher, Normalized(create_model("microcnn", num_classes=10), mean, std)


@pytest.mark.parametrize("method", ["dfad", "dafl", "zskt", "dfq"])
def test_each_method_runs_through_the_distiller(method):
    with initialize_config_module("datafree.recipes", version_base="1.3"):
        cfg = compose("distill", overrides=[f"experiment=demo_{method}", "data.image_size=8", "synthesizer.batch_size=16",
                                            "amp=false", "trainer.rounds=3", "trainer.student_steps=2",
                                            "trainer.batch_size=16", "trainer.eval_every=3"])
    assert cfg.synthesizer._target_ == "datafree.synthesizers.GeneratorSynthesizer"
    synth = instantiate(cfg.synthesizer)
    teacher, student = _demo_nets()
    before = _params(student)
    test = [(torch.rand(16, 3, 8, 8), torch.randint(10, (16,)))]
    distiller = instantiate(cfg.trainer)(teacher=teacher, student=student, source=synth, device=CPU, num_classes=10,
                                         input_size=(3, 8, 8), amp=False, test_batches=test, progress=False)
    assert [t.kind for t in distiller.objectives.features] == (["attention"] if method == "zskt" else [])
    result = distiller.fit()
    assert result.rounds == 3 and result.student_steps == 6 and result.images_synthesized == 48
    assert _max_change(before, student) > 0 and synth.rounds_done == 3
    expected = {"dfad": {"adv"}, "dafl": {"oh", "act", "ie"}, "zskt": {"adv"}, "dfq": {"adv", "bn", "oh", "ie"}}[method]
    assert expected <= set(synth.last_losses)
    assert all(torch.isfinite(v) for v in synth.last_losses.values())
    assert _hook_count(teacher) == 0 and _hook_count(student) == 0
