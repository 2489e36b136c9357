"""Generator-based data-free distillation: DFAD, DAFL, ZSKT and DFQ as settings of one synthesizer.

A generator ``G(z)`` is trained so that the frozen teacher and the current student,
acting together as the discriminator, are pushed apart on its images, optionally
with priors that keep the images teacher-like:

* ``adv``: minus the teacher-student disagreement (DFAD: L1 on logits; ZSKT: KL;
  CMI: KL only where both still agree; or Jensen-Shannon),
* ``bn``: the teacher's BatchNorm input statistics match its running ones (DFQ),
* ``oh``: the teacher is confident about its own argmax (DAFL one-hot),
* ``act``: the teacher's penultimate features are large (DAFL activation),
* ``ie``: the classes are balanced across the batch (DAFL information entropy),
* ``ce``: a conditional generator's images get the class they were asked for.

The student trains on fresh ``sample()`` draws between generator rounds, as in
DFAD. Options cover the generator life cycle: keep it, re-initialise it (or its
first layer) every k rounds, or adapt a clone of a base generator each round with a
Reptile step back into the base (``clone_per_batch``, ``meta_lr``). That is in the spirit
of FastDFKD's meta-generator, not FastDFKD itself: FastDFKD uses a first-order MAML step
with its own optimiser, a separate latent learning rate, a warm-up and statistics momentum;
the fast synthesizer (``synthesizers/fast.py``) is datafree's few-step method.

Under torchrun the generator is trained with the student as one model: it starts as rank 0's
(again after each re-initialisation) and its gradients are averaged over the ranks before each
update, while each rank draws its own latents (``seed + rank``). It is not wrapped in DDP:
its updates take their gradients with ``torch.autograd.grad``, which DDP does not support, so
the all-reduce that DDP would make is made explicitly (:func:`~datafree.utils.dist.average_gradients`).
"""
from __future__ import annotations

import contextlib
import copy
import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from datafree.ops.divergences import jensen_shannon, kd_kl, logit_l1, masked_kl
from datafree.errors import DatafreeError
from datafree.models import create_model
from datafree.synthesizers.augment import Augment
from datafree.synthesizers.base import Batch, Synthesizer, check_loss_weights
from datafree.ops.hooks import (BatchNormStatistics, PenultimateFeatures, check_batchnorm_teacher,
                                        check_bn_distance, require_hookable)
from datafree.utils import dist
from datafree.utils.device import autocast, generator_layout
from datafree.utils.nonfinite import NonFiniteGuard, fused_adam, load_optimizer_state

# Each maps (student_logits, teacher_logits) to a disagreement the generator maximises.
DISAGREEMENTS = {
    "l1": logit_l1,
    "kl": lambda s, t: kd_kl(s, t, 1.0),
    "masked_kl": masked_kl,
    "js": lambda s, t: jensen_shannon(t, s),
}
LIFECYCLES = ("keep", "reinit", "reinit_first_layer")


def class_imbalance(teacher_logits: torch.Tensor) -> torch.Tensor:
    """ln(K) - entropy of the batch-mean softmax: 0 when every class is equally likely.

    Minimising it is DAFL's information-entropy term; the ln(K) offset changes no gradient
    but makes the logged value read as a distance from balance.
    """
    p = F.softmax(teacher_logits.float(), dim=1).mean(0)
    # + ln K, a Python float: no host-to-device copy on the hot path.
    return (p * p.clamp_min(1e-12).log()).sum() + math.log(p.numel())


class GeneratorSynthesizer(Synthesizer):
    """One generator-based synthesizer; the method is the choice of weights (see the recipes).

    DFAD: ``adv_loss="l1"``. ZSKT: ``adv_loss="kl"``. DAFL: ``adv_weight=0`` with
    ``oh_weight``, ``act_weight``, ``ie_weight``. DFQ: ``bn_weight`` + ``oh_weight`` +
    ``ie_weight`` + a KL adversary. A zero weight costs nothing: no forward pass, no hook.
    """

    def __init__(
        self,
        *,
        generator: nn.Module | None = None,
        latent_dim: int = 256,
        batch_size: int = 256,
        g_steps: int = 1,
        lr: float = 1e-3,
        betas: Sequence[float] = (0.5, 0.999),
        adv_weight: float = 1.0,
        adv_loss: str = "l1",
        bn_weight: float = 0.0,
        first_bn_multiplier: float = 1.0,
        bn_distance: str = "raw",
        oh_weight: float = 0.0,
        act_weight: float = 0.0,
        ie_weight: float = 0.0,
        conditional: bool = False,
        ce_weight: float = 0.0,
        lifecycle: str = "keep",
        reinit_every: int = 0,
        clone_per_batch: bool = False,
        optimize_latent: bool = False,
        meta_lr: float = 0.0,
        anneal: bool = True,
        clip_grad_norm: float | None = None,
        amp: bool = True,
        augment: Sequence[nn.Module] | None = None,
    ):
        check_loss_weights("generator", adv_weight=adv_weight, bn_weight=bn_weight, oh_weight=oh_weight,
                           act_weight=act_weight, ie_weight=ie_weight, ce_weight=ce_weight)
        if first_bn_multiplier < 0:
            raise DatafreeError(f"first_bn_multiplier must be >= 0, got {first_bn_multiplier}.")
        if isinstance(latent_dim, bool) or not isinstance(latent_dim, int) or latent_dim <= 0:
            raise DatafreeError(f"latent_dim must be a positive integer (e.g. 256), got latent_dim={latent_dim!r}.")
        if batch_size < 1:
            raise DatafreeError(f"batch_size must be >= 1, got batch_size={batch_size}.")
        if g_steps < 1:
            raise DatafreeError(f"g_steps (generator updates per round) must be >= 1, got g_steps={g_steps}.")
        if lr <= 0:
            raise DatafreeError(f"the generator learning rate lr must be > 0, got lr={lr}.")
        betas = tuple(float(b) for b in betas)
        if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
            raise DatafreeError(f"betas must be two Adam coefficients in [0, 1), got betas={list(betas)}.")
        if adv_loss not in DISAGREEMENTS:
            raise DatafreeError(f"unknown adv_loss {adv_loss!r}: choose one of {sorted(DISAGREEMENTS)}.")
        if lifecycle not in LIFECYCLES:
            raise DatafreeError(f"unknown lifecycle {lifecycle!r}: choose one of {list(LIFECYCLES)}.")
        if reinit_every < 0:
            raise DatafreeError(f"reinit_every counts rounds and must be >= 0 (0 = never), got reinit_every={reinit_every}.")
        if lifecycle != "keep" and reinit_every == 0:
            raise DatafreeError(f"lifecycle={lifecycle!r} needs reinit_every >= 1 (rounds between resets); with 0 it never happens.")
        if lifecycle == "keep" and reinit_every > 0:
            raise DatafreeError(f"reinit_every={reinit_every} has no effect with lifecycle='keep': "
                                "choose lifecycle='reinit' or 'reinit_first_layer', or set reinit_every=0.")
        if not 0 <= meta_lr <= 1:
            raise DatafreeError(f"meta_lr is the step from the base generator towards each round's clone, in [0, 1]; got {meta_lr}.")
        if meta_lr > 0 and not clone_per_batch:
            raise DatafreeError("meta_lr only applies with clone_per_batch=true (the base learns from each round's clone): "
                                "set clone_per_batch=true or meta_lr=0.")
        if ce_weight > 0 and not conditional:
            raise DatafreeError("ce_weight needs class targets, which only a conditional generator has: "
                                "set conditional=true or ce_weight=0.")
        if generator is not None and not callable(generator):
            raise DatafreeError(f"generator must be an nn.Module, a factory (a recipe node with _partial_: true) or null "
                                f"(to build one), got {type(generator).__name__}.")
        self.generator = generator
        self.latent_dim, self.batch_size, self.g_steps = int(latent_dim), int(batch_size), int(g_steps)
        self.conditional = bool(conditional)
        self.aims_at_classes = self.conditional  # its generator is asked for classes (draw_targets)
        if isinstance(generator, nn.Module):
            self._check_generator(generator)
        self.lr, self.betas = float(lr), betas
        self.adv_weight, self.adv_loss = float(adv_weight), str(adv_loss)
        self.bn_weight, self.first_bn_multiplier = float(bn_weight), float(first_bn_multiplier)
        self.bn_distance = check_bn_distance(bn_distance, "synthesizer.bn_distance")
        self.oh_weight, self.act_weight, self.ie_weight = float(oh_weight), float(act_weight), float(ie_weight)
        self.ce_weight = float(ce_weight)
        self.lifecycle, self.reinit_every = str(lifecycle), int(reinit_every)
        self.clone_per_batch, self.optimize_latent, self.meta_lr = bool(clone_per_batch), bool(optimize_latent), float(meta_lr)
        if clip_grad_norm is not None and clip_grad_norm <= 0:
            raise DatafreeError(f"clip_grad_norm must be > 0 or null (off), got {clip_grad_norm}.")
        self.anneal, self.clip_grad_norm = bool(anneal), clip_grad_norm
        self._lr_now = self.lr
        self.amp = bool(amp)
        self.augment = Augment(jitter=0, flip=False, extra=augment) if augment else None
        self.optimizer: torch.optim.Optimizer | None = None
        self.rounds_done = 0
        self._active: nn.Module | None = None  # what sample() draws from: the base, or the latest clone
        self._pending_state: dict | None = None

    # -- setup --------------------------------------------------------------------------------------
    def check_teacher(self, teacher: nn.Module) -> None:
        if self.bn_weight:
            check_batchnorm_teacher(teacher, "the generator's BatchNorm-statistics prior (bn_weight)")
        if self.act_weight:
            require_hookable(teacher, "the activation prior (act_weight)")
            PenultimateFeatures(teacher, "the activation prior (act_weight)", "set synthesizer.act_weight=0.")

    def backward_batch(self) -> tuple[int, bool]:
        return self.batch_size, self.adv_weight > 0

    def validate(self) -> None:
        if not isinstance(self.generator, nn.Module):
            self.generator = self._build_generator(self.generator)
        if self.conditional and getattr(self.generator, "num_classes", self.num_classes) != self.num_classes:
            raise DatafreeError(f"the conditional generator knows {self.generator.num_classes} classes but the teacher has "
                                f"{self.num_classes}: build it with num_classes={self.num_classes}.")
        if self.lifecycle == "reinit_first_layer" and not callable(getattr(self.generator, "reset_first_layer", None)):
            raise DatafreeError(f"lifecycle='reinit_first_layer' needs a generator with reset_first_layer(); "
                                f"{type(self.generator).__name__} has none: use lifecycle='reinit'.")
        self.check_teacher(self.teacher)
        if dist.is_distributed() and self.optimize_latent and self.clip_grad_norm:
            raise DatafreeError("under torchrun, clip_grad_norm with optimize_latent would scale the shared generator's "
                                "gradient by each rank's own latent gradient: set synthesizer.clip_grad_norm=null or "
                                "synthesizer.optimize_latent=false.")
        self.generator = generator_layout(self.generator.to(self.device)).train()
        dist.broadcast_module(self.generator)  # one generator for the run: rank 0's
        if self.augment is not None:
            self.augment.to(self.device)
        self.optimizer = self._adam(self.generator.parameters())
        self._guard = NonFiniteGuard(self.device, (), shared=True)
        self._active = self.generator
        if self._pending_state is not None:
            state, self._pending_state = self._pending_state, None
            self.load_state_dict(state)
        with torch.no_grad():
            images = self._generate(self.generator, *self._latent(2))
            if tuple(images.shape[1:]) != tuple(self.input_size):
                raise DatafreeError(
                    f"the generator makes images of shape {tuple(images.shape[1:])} but the teacher takes "
                    f"{tuple(self.input_size)}: set the generator's image_size/channels to match "
                    "(or synthesizer.generator=null to build one from the teacher's input size)."
                )
            with autocast(self.device, self.amp):
                logits = self.teacher(images).float()
        if not torch.isfinite(logits).all():
            raise DatafreeError("the teacher's logits on generated images are not finite (NaN or inf): check the teacher "
                                "checkpoint on real inputs and its normalisation (teacher.mean / teacher.std).")
        if logits.dim() != 2 or logits.shape[1] != self.num_classes:
            raise DatafreeError(f"the teacher returns logits of shape {tuple(logits.shape)} but num_classes={self.num_classes}: "
                                "make data.num_classes match the teacher.")

    def _build_generator(self, factory) -> nn.Module:
        """A generator for the teacher's input: the factory (default: datafree's DCGAN generator) gets its size."""
        channels, height, width = self.input_size
        sizes = {"num_classes": self.num_classes, "latent_dim": self.latent_dim, "channels": channels,
                 "image_size": height if height == width else (height, width), "conditional": self.conditional}
        if factory is None:
            return create_model("dcgan_generator", **sizes)
        try:
            generator = factory(**sizes)
        except TypeError as error:
            raise DatafreeError(f"the generator factory (synthesizer.generator) is called with {', '.join(sizes)} "
                                f"from the teacher's input, and refused them ({error}): give a factory that takes them, "
                                "or an nn.Module.") from None
        if not isinstance(generator, nn.Module):
            raise DatafreeError(f"the generator factory built a {type(generator).__name__}, not an nn.Module.")
        self._check_generator(generator)
        return generator

    def _check_generator(self, generator: nn.Module) -> None:
        own_latent = getattr(generator, "latent_dim", self.latent_dim)
        if own_latent != self.latent_dim:
            raise DatafreeError(f"the generator takes z of size {own_latent} but latent_dim={self.latent_dim}: "
                                f"set latent_dim={own_latent}.")
        own_conditional = getattr(generator, "conditional", self.conditional)
        if bool(own_conditional) != self.conditional:
            raise DatafreeError(f"the generator has conditional={own_conditional} but the synthesizer "
                                f"conditional={self.conditional}: make them agree.")

    def _adam(self, params) -> torch.optim.Optimizer:
        return fused_adam(params, lr=self._lr_now, betas=self.betas)

    def follow_schedule(self, factor: float) -> None:
        """With ``anneal``, the generator's learning rate follows the student's schedule (as DFAD decays both):
        at the end of a run the generator stops moving, so the student's BatchNorm statistics, which follow the
        images it sees, settle on the final images instead of drifting after the student's learning rate is 0."""
        if not self.anneal:
            return
        self._lr_now = self.lr * factor
        if self.optimizer is not None:
            for group in self.optimizer.param_groups:
                group["lr"] = self._lr_now

    def _latent(self, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        z = torch.randn(n, self.latent_dim, device=self.device)
        labels = self.draw_targets(n) if self.conditional else None
        return z, labels

    def _generate(self, generator: nn.Module, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        with autocast(self.device, self.amp):
            images = generator(z, labels) if self.conditional else generator(z)
        return images.float().contiguous()  # NCHW from a channels_last generator (the CPU's), as the networks take them

    # -- one round --------------------------------------------------------------------------------------
    def synthesize(self) -> Batch:
        self._apply_lifecycle()
        base = self.generator
        if self.clone_per_batch:
            generator = copy.deepcopy(base)
            optimizer = self._adam(generator.parameters())  # fresh moments: each clone starts from the base
        else:
            generator, optimizer = base, self.optimizer
        generator.train()
        z, labels = self._latent(self.batch_size)
        latent_optimizer = None
        if self.optimize_latent:
            z.requires_grad_(True)
            latent_optimizer = self._adam([z])
        params = [p for p in generator.parameters() if p.requires_grad] + ([z] if self.optimize_latent else [])
        student_was_training = self.student.training
        self.student.eval()  # its BN running statistics must not drift towards the generator's batches
        bn_stats = (BatchNormStatistics(self.teacher, self.first_bn_multiplier, distance=self.bn_distance)
                    if self.bn_weight else None)
        features = PenultimateFeatures(self.teacher, "the activation prior (act_weight)",
                                       "set synthesizer.act_weight=0.") if self.act_weight else None
        try:
            with bn_stats or contextlib.nullcontext(), features or contextlib.nullcontext():
                for _ in range(self.g_steps):
                    if not self.optimize_latent:
                        z, labels = self._latent(self.batch_size)
                    parts, disagreement = self._objective(generator, z, labels, bn_stats, features)
                    # autograd.grad, not backward: teacher and student gradient buffers stay untouched,
                    # so the student's optimiser never sees a generator-step gradient.
                    total = sum(parts.values())
                    grads = torch.autograd.grad(total, params, allow_unused=True)
                    # The generator is one model over the ranks; a latent being optimised is each rank's own.
                    dist.average_gradients(grads[: len(params) - self.optimize_latent])
                    for p, g in zip(params, grads):
                        p.grad = g
                    if self.clip_grad_norm:  # ZSKT clips the generator's gradient at 5
                        torch.nn.utils.clip_grad_norm_(params, self.clip_grad_norm, foreach=True)
                    # A NaN/Inf loss or gradient skips this update on the device (counted, no host sync).
                    found = self._guard.flag(total, [g for g in grads if g is not None])
                    self._guard.apply(optimizer, found)
                    if latent_optimizer is not None:
                        self._guard.apply(latent_optimizer, found)
                    self._guard.count(found, {})
        finally:
            self.student.train(student_was_training)
        self.last_losses = {k: v.detach() for k, v in parts.items()}
        if disagreement is not None:
            self.last_losses["disagreement"] = disagreement.detach()
        for p in params:
            p.grad = None
        if self.clone_per_batch:
            self._meta_step(base, generator)
        self._active = generator
        self.rounds_done += 1

        if not self.optimize_latent:
            z, labels = self._latent(self.batch_size)
        with torch.no_grad():
            images = self._generate(generator, z.detach(), labels)
        return Batch(images=images, targets=labels)

    def _objective(self, generator, z, labels, bn_stats, features):
        images = self._generate(generator, z, labels)
        inputs = self.augment(images) if self.augment is not None else images
        with autocast(self.device, self.amp):
            teacher_logits = self.teacher(inputs).float()
        parts: dict[str, torch.Tensor] = {}
        disagreement = None
        if self.adv_weight:
            with autocast(self.device, self.amp):
                student_logits = self.student(inputs).float()
            disagreement = DISAGREEMENTS[self.adv_loss](student_logits, teacher_logits)
            parts["adv"] = -self.adv_weight * disagreement
        if bn_stats is not None:
            parts["bn"] = self.bn_weight * bn_stats.loss()
        if self.oh_weight:
            parts["oh"] = self.oh_weight * F.cross_entropy(teacher_logits, teacher_logits.argmax(1))
        if features is not None:
            # DAFL's normalisation (mean |f| over batch and features), which its published weight assumes.
            parts["act"] = -self.act_weight * features.features.float().abs().mean()
        if self.ie_weight:
            parts["ie"] = self.ie_weight * class_imbalance(teacher_logits)
        if self.ce_weight:
            parts["ce"] = self.ce_weight * F.cross_entropy(teacher_logits, labels)
        return parts, disagreement

    # -- life cycle -------------------------------------------------------------------------------------
    def _apply_lifecycle(self) -> None:
        if not self.reinit_every or not self.rounds_done or self.rounds_done % self.reinit_every:
            return
        if self.lifecycle == "reinit_first_layer":
            self.generator.reset_first_layer()
        elif callable(getattr(self.generator, "reset_parameters", None)):
            self.generator.reset_parameters()
        else:
            for module in self.generator.modules():
                if module is not self.generator and callable(getattr(module, "reset_parameters", None)):
                    module.reset_parameters()
        dist.broadcast_module(self.generator)  # drawn with each rank's own random numbers: take rank 0's
        # Adam moments gathered for the old weights would steer the fresh ones.
        self.optimizer = self._adam(self.generator.parameters())
        self._active = self.generator

    @torch.no_grad()
    def _meta_step(self, base: nn.Module, clone: nn.Module) -> None:
        """Reptile: move the base a fraction meta_lr towards the adapted clone."""
        if not self.meta_lr:
            return
        for b, c in zip(base.parameters(), clone.parameters()):
            b.lerp_(c, self.meta_lr)
        for b, c in zip(base.buffers(), clone.buffers()):
            if b.is_floating_point():
                b.lerp_(c, self.meta_lr)

    @property
    def sample_capturable(self) -> bool:
        """sample() draws from the same generator module every round, updated in place, unless each round
        adapts its own clone: only then may a student step that calls it be captured in a CUDA graph."""
        return not self.clone_per_batch

    @property
    def skipped_steps(self) -> torch.Tensor:
        """Generator updates skipped for a non-finite loss or gradient (a device tensor: no sync)."""
        return self._guard.skipped

    # -- cheap fresh samples for the student step ----------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        return self._generate(self._active, *self._latent(n))

    # -- checkpoints ------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        if self.optimizer is None:
            raise RuntimeError("GeneratorSynthesizer.state_dict() before bind(): there is no generator yet")
        state = {"generator": self.generator.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "rounds_done": self.rounds_done, "lr_now": self._lr_now, "batch_size": self.batch_size, "guard": self._guard.state_dict()}
        if self._active is not None and self._active is not self.generator:
            # clone_per_batch: sample() draws from this round's adapted clone, not from the base.
            state["active"] = self._active.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        if self.optimizer is None:  # not bound yet: the generator may not exist; apply in validate()
            self._pending_state = state
            return
        self.generator.load_state_dict(state["generator"])
        load_optimizer_state(self.optimizer, state["optimizer"])
        self.rounds_done = int(state.get("rounds_done", 0))
        self._lr_now = float(state.get("lr_now", self.lr))
        self.batch_size = int(state.get("batch_size", self.batch_size))
        if "guard" in state:
            self._guard.load_state_dict(state["guard"])
        self._active = self.generator
        if "active" in state:
            self._active = copy.deepcopy(self.generator)
            self._active.load_state_dict(state["active"])
