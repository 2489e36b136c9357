"""Distillation and disagreement losses (all on logits, all batch means)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def kd_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Hinton's KD: KL(softmax(t/T) || softmax(s/T)) * T^2, averaged over the batch.

    The T^2 keeps gradient magnitudes comparable across temperatures.
    """
    t = float(temperature)
    log_p_student = F.log_softmax(student_logits.float() / t, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits.float() / t, dim=1)
    return F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True) * (t * t)


def jensen_shannon(logits_a: torch.Tensor, logits_b: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Jensen-Shannon divergence between the two softmaxes, per batch mean, in nats (<= ln 2)."""
    p = F.softmax(logits_a.float() / temperature, dim=1)
    q = F.softmax(logits_b.float() / temperature, dim=1)
    m = 0.5 * (p + q)
    log_m = m.clamp_min(1e-12).log()
    kl_pm = (p * (p.clamp_min(1e-12).log() - log_m)).sum(1)
    kl_qm = (q * (q.clamp_min(1e-12).log() - log_m)).sum(1)
    return (0.5 * (kl_pm + kl_qm)).mean()


class KDLoss(nn.Module):
    """``kd_weight * KL at T`` plus ``hard_weight * CE(student, argmax teacher)``.

    A zero weight skips its term entirely (no work, no NaN from unused terms).
    """

    def __init__(self, temperature: float = 4.0, kd_weight: float = 1.0, hard_weight: float = 0.0):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if kd_weight < 0 or hard_weight < 0:
            raise ValueError(f"loss weights must be >= 0, got kd={kd_weight}, hard={hard_weight}")
        self.temperature = float(temperature)
        self.kd_weight = float(kd_weight)
        self.hard_weight = float(hard_weight)

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        loss = student_logits.new_zeros((), dtype=torch.float32)
        if self.kd_weight:
            loss = loss + self.kd_weight * kd_kl(student_logits, teacher_logits, self.temperature)
        if self.hard_weight:
            loss = loss + self.hard_weight * F.cross_entropy(student_logits.float(), teacher_logits.argmax(1))
        return loss
