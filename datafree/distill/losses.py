"""Distillation and disagreement losses (all on logits, all batch means)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from datafree.errors import DatafreeError
from datafree.ops.divergences import kd_kl, logit_l1


class KDLoss(nn.Module):
    """``kd_weight * KL at T`` plus ``hard_weight * CE(student, argmax teacher)``.

    A zero weight skips its term entirely (no work, no NaN from unused terms).
    """

    name = "kd"  # how messages (e.g. about a non-finite loss) call this term

    def __init__(self, temperature: float = 4.0, kd_weight: float = 1.0, hard_weight: float = 0.0):
        super().__init__()
        if temperature <= 0:
            raise DatafreeError(f"the KD loss temperature must be > 0, got {temperature}: set e.g. trainer.loss.temperature=4.")
        if kd_weight < 0 or hard_weight < 0:
            raise DatafreeError(f"the KD loss weights must be >= 0, got kd_weight={kd_weight}, hard_weight={hard_weight}: "
                                "set trainer.loss.kd_weight / trainer.loss.hard_weight to 0 or more.")
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


class LogitL1Loss(nn.Module):
    """Student loss of DFAD: L1 between logits, called like :class:`KDLoss`.

    ``temperature`` divides both logits first; 1 is DFAD. It also keeps the interface of
    KDLoss, which recipes and the trainer read.
    """

    name = "logit_l1"

    def __init__(self, temperature: float = 1.0):
        super().__init__()
        if temperature <= 0:
            raise DatafreeError(f"the logit L1 loss temperature must be > 0, got {temperature}: set e.g. trainer.loss.temperature=1.")
        self.temperature = float(temperature)

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        return logit_l1(student_logits / self.temperature, teacher_logits / self.temperature)


def _energy(features: torch.Tensor) -> torch.Tensor:
    return features.float().pow(2).mean(1)


def attention_map(features: torch.Tensor) -> torch.Tensor:
    """Activation-based attention (Zagoruyko & Komodakis): channel mean of squares, flattened, unit L2 norm."""
    return F.normalize(_energy(features).flatten(1), dim=1)


def attention_transfer(student_feats, teacher_feats, weights=None) -> torch.Tensor:
    """Sum over layer pairs of the mean squared difference between attention maps, each times its ``weights`` entry.

    Channel counts may differ (maps are channel means). Where spatial sizes differ the
    larger energy map is average-pooled to the smaller before normalising, so each map
    still sums the energy of the region it covers.
    """
    if len(student_feats) != len(teacher_feats) or not len(student_feats):
        raise ValueError(
            f"attention transfer pairs layers: got {len(student_feats)} student and {len(teacher_feats)} teacher feature maps."
        )
    total = None
    for index, (s, t) in enumerate(zip(student_feats, teacher_feats)):
        es, et = _energy(s), _energy(t)
        if es.shape[-2:] != et.shape[-2:]:
            size = (min(es.shape[-2], et.shape[-2]), min(es.shape[-1], et.shape[-1]))
            es = F.adaptive_avg_pool2d(es.unsqueeze(1), size).squeeze(1)
            et = F.adaptive_avg_pool2d(et.unsqueeze(1), size).squeeze(1)
        term = (F.normalize(es.flatten(1), dim=1) - F.normalize(et.flatten(1), dim=1)).pow(2).mean()
        if weights is not None:
            term = float(weights[index]) * term
        total = term if total is None else total + term
    return total
