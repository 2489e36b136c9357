"""DeepInversion (Yin et al., CVPR 2020), with the Adaptive DeepInversion competition term.

Each round a batch of pixels is optimised, starting from noise, so that

* the teacher's BatchNorm input statistics match its running statistics
  (the feature-distribution prior, heavier on the first BN layer if asked),
* the teacher classifies each image as a sampled target class (cross-entropy),
* total variation (L1: the per-direction mean; L2: the batch-wide norm) and the L2 norm of
  the batch keep images smooth and bounded, all on the network's normalised input as in
  the paper,
* optionally (ADI) teacher and student disagree on them: ``adi_weight * (1 - JS)``.

Random jitter, flips and optional kornia augmentations are applied at each
step, differentiably, so the images must work under them. Images live in
[0, 1] pixel space and are clamped after each step.
"""
from __future__ import annotations

import contextlib
import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from datafree.ops.divergences import jensen_shannon
from datafree.errors import DatafreeError
from datafree.synthesizers.augment import Augment
from datafree.synthesizers.base import Batch, Synthesizer, check_loss_weights
from datafree.ops.hooks import BatchNormStatistics, check_batchnorm_teacher, check_bn_distance
from datafree.synthesizers.priors import total_variation
from datafree.utils.device import autocast


class DeepInversion(Synthesizer):
    aims_at_classes = True
    """Each round, ``batch_size`` images optimised from noise for ``iterations`` Adam steps (see the module docstring).

    A weight of 0 switches its term off; ``adi_weight`` > 0 adds the ADI competition term.
    """

    def __init__(
        self,
        batch_size: int = 256,
        iterations: int = 2000,
        lr: float = 0.05,
        bn_weight: float = 10.0,
        first_bn_multiplier: float = 1.0,
        bn_distance: str = "raw",
        ce_weight: float = 1.0,
        tv_l1_weight: float = 0.0,
        tv_l2_weight: float = 1e-3,
        l2_weight: float = 0.0,
        adi_weight: float = 0.0,
        jitter: int = 2,
        flip: bool = True,
        augment: Sequence[nn.Module] | None = None,
        init_std: float = 0.2,
        amp: bool = True,
    ):
        check_loss_weights("DeepInversion", bn_weight=bn_weight, ce_weight=ce_weight, tv_l1_weight=tv_l1_weight,
                           tv_l2_weight=tv_l2_weight, l2_weight=l2_weight, adi_weight=adi_weight)
        if batch_size < 1 or iterations < 1 or lr <= 0:
            raise DatafreeError(
                f"DeepInversion needs batch_size >= 1, iterations >= 1 and lr > 0 (got {batch_size}, {iterations}, {lr})."
            )
        self.batch_size, self.iterations, self.lr = int(batch_size), int(iterations), float(lr)
        self.bn_weight, self.first_bn_multiplier = float(bn_weight), float(first_bn_multiplier)
        self.bn_distance = check_bn_distance(bn_distance, "synthesizer.bn_distance")
        self.ce_weight, self.tv_l1_weight, self.tv_l2_weight = float(ce_weight), float(tv_l1_weight), float(tv_l2_weight)
        self.l2_weight, self.adi_weight = float(l2_weight), float(adi_weight)
        self.augment = Augment(jitter=jitter, flip=flip, extra=augment)
        self.init_std = float(init_std)
        self.amp = bool(amp)

    def check_teacher(self, teacher: nn.Module) -> None:
        if self.bn_weight > 0:
            check_batchnorm_teacher(teacher, "DeepInversion (its BatchNorm-statistics prior, bn_weight)")

    def backward_batch(self) -> tuple[int, bool]:
        return self.batch_size, self.adi_weight > 0

    def validate(self) -> None:
        self.check_teacher(self.teacher)
        self.augment.to(self.device)

    def _network_input(self, images: torch.Tensor) -> torch.Tensor:
        # The image priors act where the paper's act: on the network's normalised input (the teacher's
        # normalisation, when it has one; else pixels centred on grey).
        mean, std = getattr(self.teacher, "mean", None), getattr(self.teacher, "std", None)
        return images - 0.5 if mean is None or std is None else (images - mean) / std

    def synthesize(self) -> Batch:
        n = self.batch_size
        targets = self.draw_targets(n)
        pixels = (0.5 + self.init_std * torch.randn(n, *self.input_size, device=self.device)).clamp_(0, 1)
        pixels.requires_grad_(True)
        optimizer = torch.optim.Adam([pixels], lr=self.lr, betas=(0.5, 0.9))
        student_was_training = self.student.training
        self.student.eval()  # its BN running statistics must not drift towards the synthetic batch
        bn_stats = (BatchNormStatistics(self.teacher, self.first_bn_multiplier, distance=self.bn_distance)
                    if self.bn_weight > 0 else None)
        try:
            with bn_stats if bn_stats is not None else contextlib.nullcontext():
                for step in range(self.iterations):
                    for group in optimizer.param_groups:  # cosine decay to 0 over the round
                        group["lr"] = 0.5 * self.lr * (1 + math.cos(math.pi * step / self.iterations))
                    loss, parts = self._objective(pixels, targets, bn_stats)
                    # autograd.grad, not backward: no gradient buffers are touched in teacher or student.
                    (pixels.grad,) = torch.autograd.grad(loss, [pixels])
                    optimizer.step()
                    with torch.no_grad():
                        pixels.clamp_(0, 1)
        finally:
            self.student.train(student_was_training)
        self.last_losses = {k: v.detach() for k, v in parts.items()}
        return Batch(images=pixels.detach(), targets=targets)

    def _objective(self, pixels, targets, bn_stats):
        inputs = self.augment(pixels)
        with autocast(self.device, self.amp):
            teacher_logits = self.teacher(inputs).float()
        parts: dict[str, torch.Tensor] = {}
        if self.ce_weight:
            parts["ce"] = self.ce_weight * F.cross_entropy(teacher_logits, targets)
        if bn_stats is not None:
            parts["bn"] = self.bn_weight * bn_stats.loss()
        if self.tv_l1_weight or self.tv_l2_weight or self.l2_weight:
            network_input = self._network_input(inputs.float())
            if self.tv_l1_weight:
                parts["tv_l1"] = self.tv_l1_weight * total_variation(network_input, p=1)
            if self.tv_l2_weight:
                parts["tv_l2"] = self.tv_l2_weight * total_variation(network_input, p=2)
            if self.l2_weight:  # the L2 norm of the whole batch, as the paper's
                parts["l2"] = self.l2_weight * torch.linalg.vector_norm(network_input)
        if self.adi_weight:
            with autocast(self.device, self.amp):
                student_logits = self.student(inputs).float()
            # Reward disagreement: low when the student's softmax differs from the teacher's.
            parts["adi"] = self.adi_weight * (1.0 - jensen_shannon(teacher_logits, student_logits).clamp(0, 1))
        return sum(parts.values()), parts


