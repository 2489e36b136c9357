"""The fast synthesizer: a generator that learns across rounds, a fresh random input layer each round.

Each round makes one batch in a few generator steps (``g_steps``, 20 in the GPU recipes rather than the
thousands of DeepInversion), after the ideas of FastDFKD (Fang et al., AAAI 2022: a
generator shared across batches so that each new batch needs only a few steps; statistics
momentum) and NAYER (Tran et al., CVPR 2024: a "noisy layer", re-initialised every round,
in front of a persistent generator, fed with the class):

* input: ``[one-hot class, z]`` through the *noisy layer* (a linear layer drawn anew every
  round, with its Adam moments cleared), then the persistent generator body (DCGAN-style,
  no output BatchNorm: a sigmoid straight after the last convolution, as FastDFKD's, so
  the pixel spread is not capped);
* loss: ``bn_weight`` x the teacher's BatchNorm-statistics distance (blended with a
  running average of earlier batches, ``bn_momentum``; ``bn_distance`` raw, DeepInversion's,
  or relative, in the teacher's own units: :class:`~datafree.ops.hooks.BatchNormStatistics`),
  ``ce_weight`` x cross-entropy of
  the teacher to the asked-for class, and ``adv_weight`` x minus the teacher-student KL
  where both still agree (CMI/FastDFKD's adversarial term; the student in eval mode);
* the round's final images go to the trainer's uint8 memory bank, from which the student
  learns (with crop + flip) between rounds.

Departures from both papers: no meta-learning step (the body is simply trained on,
as in NAYER), one-hot classes instead of NAYER's text embeddings (no language model
here), a per-image jitter + flip instead of FastDFKD's random resized crop in synthesis.

On a GPU each generator step runs as one captured CUDA graph (``cuda_graphs``):
the step has fixed shapes, reads its inputs from buffers refilled every round and draws
nothing on the host.
"""
from __future__ import annotations

import contextlib
import logging

import torch
import torch.nn.functional as F
from torch import nn

from datafree.ops.divergences import masked_kl
from datafree.errors import DatafreeError
from datafree.models import create_model
from datafree.synthesizers.augment import Augment
from datafree.synthesizers.base import Batch, Synthesizer, check_loss_weights
from datafree.ops.hooks import BatchNormStatistics, check_batchnorm_teacher, check_bn_distance
from datafree.utils.device import autocast, generator_layout
from datafree.utils.dist import is_main_process
from datafree.utils.graphs import CapturedStep
from datafree.utils.nonfinite import NonFiniteGuard, fused_adam, load_optimizer_state

log = logging.getLogger("datafree")


class FastSynthesizer(Synthesizer):
    """A class-conditional generator trained on across rounds; each round: new noisy layer, ``g_steps`` steps."""

    aims_at_classes = True

    def __init__(
        self,
        *,
        batch_size: int = 256,
        g_steps: int = 10,
        lr: float = 4e-3,
        latent_dim: int = 256,
        base_width: int = 64,
        bn_weight: float = 10.0,
        first_bn_multiplier: float = 1.0,
        bn_momentum: float = 0.9,
        bn_distance: str = "raw",
        ce_weight: float = 0.5,
        adv_weight: float = 1.0,
        jitter: int = 2,
        flip: bool = True,
        synthesis_size: int | None = None,
        cuda_graphs: bool = True,
        amp: bool = True,
    ):
        check_loss_weights("fast synthesizer", bn_weight=bn_weight, ce_weight=ce_weight, adv_weight=adv_weight)
        for name, value, low in (("batch_size", batch_size, 1), ("g_steps", g_steps, 1), ("latent_dim", latent_dim, 1),
                                 ("base_width", base_width, 1), ("jitter", jitter, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise DatafreeError(f"synthesizer.{name} must be an int >= {low}, got {value!r}.")
        if lr <= 0:
            raise DatafreeError(f"synthesizer.lr (the generator's Adam step) must be > 0, got {lr}.")
        if not 0 <= bn_momentum < 1:
            raise DatafreeError(f"synthesizer.bn_momentum must be in [0, 1) (0: match each batch alone), got {bn_momentum}.")
        if first_bn_multiplier < 0:
            raise DatafreeError(f"synthesizer.first_bn_multiplier must be >= 0, got {first_bn_multiplier}.")
        if synthesis_size is not None and (isinstance(synthesis_size, bool) or not isinstance(synthesis_size, int)
                                           or synthesis_size < 8 or synthesis_size % 4):
            raise DatafreeError(f"synthesizer.synthesis_size must be null (the teacher's input size) or a multiple of 4 "
                                f"of at least 8, got {synthesis_size!r}: e.g. synthesizer.synthesis_size=32.")
        self.synthesis_size, self.bn_distance = synthesis_size, check_bn_distance(bn_distance, "synthesizer.bn_distance")
        self.batch_size, self.g_steps, self.lr = int(batch_size), int(g_steps), float(lr)
        self.latent_dim, self.base_width = int(latent_dim), int(base_width)
        self.bn_weight, self.first_bn_multiplier, self.bn_momentum = float(bn_weight), float(first_bn_multiplier), float(bn_momentum)
        self.ce_weight, self.adv_weight = float(ce_weight), float(adv_weight)
        self.augment = Augment(jitter=jitter, flip=flip)
        self.cuda_graphs, self.amp = bool(cuda_graphs), bool(amp)
        self.generator: nn.Module | None = None
        self.noisy: nn.Linear | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.rounds_done = 0
        self._pending_state: dict | None = None

    # -- setup --------------------------------------------------------------------------------------
    def check_teacher(self, teacher: nn.Module) -> None:
        if self.bn_weight:
            check_batchnorm_teacher(teacher, "the fast synthesizer's BatchNorm-statistics prior (bn_weight)")

    def describe(self) -> str:
        """What the run chose, for its log: the generator's image size and the BatchNorm prior."""
        height, width = self.input_size[1:]
        resized = tuple(self._made) != (height, width)
        size = f"{self._made[0]}x{self._made[1]} images" + (f", resized to the teacher's {height}x{width}" if resized else "")
        prior = (f"{self.bn_distance} distance x {self.bn_weight:g} over {len(self._bn.layers)} BatchNorm layers"
                 if self._bn is not None else "off (bn_weight=0)")
        return f"synthesizer: the generator makes {size}; BatchNorm prior: {prior}"

    def backward_batch(self) -> tuple[int, bool]:
        return self.batch_size, self.adv_weight > 0

    def validate(self) -> None:
        channels, height, width = self.input_size
        self.check_teacher(self.teacher)
        size = self.synthesis_size
        if size is not None and size > min(height, width):
            raise DatafreeError(f"synthesizer.synthesis_size={size} is larger than the teacher's {height}x{width} "
                                f"input: set it to at most {min(height, width)}, or null for the teacher's size.")
        # A smaller synthesis size: the generator makes size x size images (width scaled for non-square inputs),
        # bilinearly upsampled to the teacher's input in every step; null: the teacher's size itself.
        shape = (height, width) if size is None else (size, max(4, round(width * size / height / 4) * 4))
        self._upsample, self._made = shape != (height, width), shape
        self.generator = generator_layout(create_model(
            "dcgan_generator", latent_dim=self.latent_dim, base_width=self.base_width,
            image_size=shape[0] if shape[0] == shape[1] else shape, channels=channels,
            output_bn=False).to(self.device).train())
        self._made = self.generator.made_size  # a size doubling cannot reach is made at the nearest one it can
        self.noisy = nn.Linear(self.num_classes + self.latent_dim, self.latent_dim).to(self.device)
        params = [*self.noisy.parameters(), *self.generator.parameters()]
        self.optimizer = fused_adam(params, lr=self.lr, betas=(0.5, 0.999), capturable=self._graphed)
        self._guard = NonFiniteGuard(self.device, ())
        self.augment.to(self.device)
        self._bn = (BatchNormStatistics(self.teacher, self.first_bn_multiplier, self.bn_momentum, self.bn_distance)
                    if self.bn_weight else None)
        if is_main_process():  # every rank binds its own synthesizer; one line says it
            log.info(self.describe())
        # What each step reads; refilled in place every round, so a captured step sees the new round.
        self._step = CapturedStep(self._generator_step, self.device, enabled=self._graphed)
        self._size_buffers()
        if self._pending_state is not None:
            state, self._pending_state = self._pending_state, None
            self.load_state_dict(state)
        with torch.no_grad():
            images = self._generate(self._code[:2])
        if tuple(images.shape[1:]) != tuple(self.input_size):
            raise DatafreeError(f"the generator makes images of shape {tuple(images.shape[1:])} but the teacher takes "
                                f"{tuple(self.input_size)}.")

    @property
    def _graphed(self) -> bool:
        return self.cuda_graphs and self.device.type == "cuda"

    def _size_buffers(self) -> None:
        """The step's input buffers at the current batch size; a new size (the trainer halves the batch after an
        out-of-memory error) means new buffers and a new capture."""
        self._code = torch.zeros(self.batch_size, self.num_classes + self.latent_dim, device=self.device)
        self._targets = torch.zeros(self.batch_size, dtype=torch.long, device=self.device)
        self._step.reset()

    # -- one round --------------------------------------------------------------------------------------
    @torch.no_grad()
    def _new_round(self) -> None:
        """A fresh noisy layer (Adam moments cleared), fresh classes and latents: all in place."""
        if self._code.shape[0] != self.batch_size:
            self._size_buffers()
        self.noisy.reset_parameters()
        for p in self.noisy.parameters():
            for value in self.optimizer.state.get(p, {}).values():
                if isinstance(value, torch.Tensor):
                    value.zero_()
        targets = self.draw_targets(self.batch_size)
        self._targets.copy_(targets)
        self._code[:, : self.num_classes] = F.one_hot(targets, self.num_classes).float()
        self._code[:, self.num_classes:].normal_()

    def _generate(self, code: torch.Tensor) -> torch.Tensor:
        """Images at the teacher's input size, in [0, 1], float32."""
        with autocast(self.device, self.amp):
            images = self.generator(self.noisy(code)).float()
        if self._upsample:
            images = F.interpolate(images, size=tuple(self.input_size[1:]), mode="bilinear", align_corners=False)
        return images.contiguous()  # NCHW from a channels_last generator (the CPU's), as the networks take them there

    def _generator_step(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One Adam step of noisy layer + generator; returns the images it started from and the loss terms."""
        images = self._generate(self._code)
        inputs = self.augment(images)
        with autocast(self.device, self.amp):
            teacher_logits = self.teacher(inputs).float()
        parts: dict[str, torch.Tensor] = {}
        if self._bn is not None:
            parts["bn"] = self.bn_weight * self._bn.loss()
        if self.ce_weight:
            parts["ce"] = self.ce_weight * F.cross_entropy(teacher_logits, self._targets)
        if self.adv_weight:
            with autocast(self.device, self.amp):
                student_logits = self.student(inputs).float()
            parts["adv"] = -self.adv_weight * masked_kl(student_logits, teacher_logits)
        total = sum(parts.values())
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        # autograd.grad, not backward: teacher and student gradient buffers stay untouched.
        grads = torch.autograd.grad(total, params)
        for p, g in zip(params, grads):
            p.grad = g
        found = self._guard.flag(total, list(grads))  # a NaN/Inf step is skipped on the device
        self._guard.apply(self.optimizer, found)
        self._guard.count(found, {})
        return images.detach(), {k: v.detach() for k, v in parts.items()}

    def synthesize(self) -> Batch:
        self._new_round()
        student_was_training = self.student.training
        self.student.eval()  # its BN running statistics must not follow the generator's batches
        try:
            with self._bn if self._bn is not None else contextlib.nullcontext():
                for _ in range(self.g_steps):
                    images, parts = self._step()
                if self._bn is not None:
                    self._bn.update_average()  # the last step's statistics: those of the images kept
        finally:
            self.student.train(student_was_training)
        self.last_losses = dict(parts)
        self.rounds_done += 1
        # The images the last step started from (one step before the final weights): no extra forward pass.
        return Batch(images=images.clone(), targets=self._targets.clone())

    @property
    def skipped_steps(self) -> torch.Tensor:
        """Generator updates skipped for a non-finite loss or gradient (a device tensor: no sync)."""
        return self._guard.skipped

    # -- checkpoints ------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        if self.optimizer is None:
            raise RuntimeError("FastSynthesizer.state_dict() before bind(): there is no generator yet")
        # No noisy layer: every round draws a new one.
        return {"generator": self.generator.state_dict(),
                "optimizer": self.optimizer.state_dict(), "rounds_done": self.rounds_done,
                "guard": self._guard.state_dict(), "bn": {} if self._bn is None else self._bn.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if self.optimizer is None:  # not bound yet: applied in validate()
            self._pending_state = state
            return
        self.generator.load_state_dict(state["generator"])
        load_optimizer_state(self.optimizer, state["optimizer"])
        self.rounds_done = int(state["rounds_done"])
        self._guard.load_state_dict(state["guard"])
        if self._bn is not None:
            self._bn.load_state_dict(state["bn"])
        self._step.reset()  # the optimizer's state tensors were replaced
