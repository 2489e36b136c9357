"""Divergences between two sets of logits (batch means): what the student loss and the synthesizers' adversarial
terms are made of. Below both, so that neither imports the other."""
from __future__ import annotations

import torch
import torch.nn.functional as F


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


# -- disagreement terms of the adversarial (generator-based) methods --------------------------------------
def logit_l1(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """DFAD's disagreement: mean |teacher - student| over batch and classes, on raw logits.

    Unlike KL it does not saturate when the softmaxes are already far apart, so the
    generator keeps a gradient late in training.
    """
    return (teacher_logits.float() - student_logits.float()).abs().mean()


def agreement_mask(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """True where student and teacher predict the same class."""
    return student_logits.argmax(1) == teacher_logits.argmax(1)


def masked_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Batch mean of ``agree * KL(teacher || student)`` per sample (times T^2, as in :func:`kd_kl`).

    CMI's adversarial term: a generator maximising it looks for samples that are hard for
    the student (high KL) yet still on the right side of the decision boundary, instead of
    drifting to inputs where the two disagree only because both are meaningless.
    """
    t = float(temperature)
    log_p_student = F.log_softmax(student_logits.float() / t, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits.float() / t, dim=1)
    per_sample = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(1)
    mask = agreement_mask(student_logits, teacher_logits).to(per_sample.dtype)
    return (mask * per_sample).mean() * (t * t)
