"""Feature terms of the student loss, over layer pairs named in the recipe.

``attention`` (Zagoruyko & Komodakis; ZSKT): attention maps are channel means,
so channel counts may differ; maps of different sizes are pooled to the
smaller. ``hint`` (FitNets): the student's features regress the teacher's; where
channel counts differ a 1x1 convolution (a linear layer for flat features)
adapts the student's, and it trains with the student. ``similarity``
(similarity-preserving KD, Tung & Mori): the batch's pairwise similarities of
each layer's activations, so any two layers pair.

Each term is ``weight * sum over pairs of pair_weight * loss(pair)``; ``pair_weights``
(one per pair, default all 1) lets deeper or shallower pairs count more.

Both resolve names against the user's network (``layer3``, ``features.12``),
probe the shapes once with a forward pass, and refuse pairs that cannot be
matched before any work.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from datafree.distill.losses import attention_transfer
from datafree.distill.relations import similarity_preserving
from datafree.errors import DatafreeError
from datafree.ops.hooks import FeatureCapture, resolve_layers
from datafree.teachers.checks import probe_inputs

KINDS = ("attention", "hint", "similarity")
KEYS = ("weight", "teacher_layers", "student_layers", "pair_weights")  # what a feature term's node may hold


class FeatureTerm(nn.Module):
    """``weight * loss(student features, teacher features)``; capture with :meth:`teacher_taps` / :meth:`student_taps`."""

    def __init__(self, kind: str, teacher: nn.Module, student: nn.Module, *, weight: float, teacher_layers,
                 student_layers, input_size: tuple[int, int, int], device: torch.device, pair_weights=None):
        super().__init__()
        if kind not in KINDS:
            raise DatafreeError(f"unknown feature term {kind!r}: choose one of {KINDS}.")
        teacher_layers, student_layers = list(teacher_layers or []), list(student_layers or [])
        if weight < 0 or not teacher_layers or len(teacher_layers) != len(student_layers):
            raise DatafreeError(
                f"trainer.{kind} needs weight >= 0 and equally long, non-empty teacher_layers and student_layers "
                f"(got weight {weight}, {len(teacher_layers)} teacher and {len(student_layers)} student layers)."
            )
        pair_weights = [1.0] * len(teacher_layers) if pair_weights is None else list(pair_weights)
        if len(pair_weights) != len(teacher_layers) or not all(_non_negative(w) for w in pair_weights):
            raise DatafreeError(
                f"trainer.{kind}.pair_weights gives one number >= 0 per layer pair: {len(teacher_layers)} pair(s), "
                f"got {pair_weights} (or leave it out for all 1)."
            )
        self.kind, self.weight = kind, float(weight)
        self.pairs = list(zip(teacher_layers, student_layers))
        self.pair_weights = [float(w) for w in pair_weights]
        self.teacher_taps = FeatureCapture(teacher, teacher_layers, "teacher")
        self.student_taps = FeatureCapture(student, student_layers, "student")
        shapes = self._probe(teacher, student, input_size, device)
        self.adapters = nn.ModuleList(self._adapter(pair, t, s) for pair, (t, s) in zip(self.pairs, shapes)).to(device)

    def _probe(self, teacher, student, input_size, device) -> list[tuple[torch.Size, torch.Size]]:
        images = probe_inputs(input_size, device, n=2)
        was_training = student.training
        student.eval()  # the probe must not move BatchNorm running statistics
        try:
            with torch.no_grad(), self.teacher_taps, self.student_taps:
                teacher(images)
                student(images)
        finally:
            student.train(was_training)
        shapes = [(t.shape, s.shape) for t, s in zip(self.teacher_taps.features, self.student_taps.features)]
        self.release()
        return shapes

    def _adapter(self, pair, t_shape: torch.Size, s_shape: torch.Size) -> nn.Module:
        (t_name, s_name) = pair
        where = f"teacher {t_name} {tuple(t_shape[1:])} and student {s_name} {tuple(s_shape[1:])}"
        if self.kind == "similarity":
            return nn.Identity()  # batch x batch similarities: any two layers compare
        if self.kind == "attention":
            if len(t_shape) != 4 or len(s_shape) != 4:
                raise DatafreeError(
                    f"attention transfer needs convolutional feature maps (channels x height x width), got {where}: "
                    "name convolutional stages in trainer.attention."
                )
            return nn.Identity()
        if len(t_shape) != len(s_shape) or len(t_shape) not in (2, 4):
            raise DatafreeError(
                f"hint features cannot be matched between {where}: pair layers that both give feature maps "
                "(channels x height x width) or both flat vectors."
            )
        t_channels, s_channels = int(t_shape[1]), int(s_shape[1])
        if t_channels == s_channels:
            return nn.Identity()
        # The adapter maps the student's channels to the teacher's (FitNets' regressor).
        if len(t_shape) == 4:
            return nn.Conv2d(s_channels, t_channels, kernel_size=1, bias=False)
        return nn.Linear(s_channels, t_channels, bias=False)

    def loss(self) -> torch.Tensor:
        teacher_feats, student_feats = self.teacher_taps.features, self.student_taps.features
        if self.kind == "attention":
            value = attention_transfer(student_feats, teacher_feats, self.pair_weights)
        elif self.kind == "similarity":
            value = sum(w * similarity_preserving(s, t) for w, s, t in zip(self.pair_weights, student_feats, teacher_feats))
        else:
            value = sum(w * _hint(adapter(s.float()), t.float())
                        for w, adapter, s, t in zip(self.pair_weights, self.adapters, student_feats, teacher_feats))
        self.release()
        return self.weight * value

    def release(self) -> None:
        """Let go of the feature maps now rather than hold them until the next step."""
        self.teacher_taps.features = [None] * len(self.teacher_taps.features)
        self.student_taps.features = [None] * len(self.student_taps.features)


def _hint(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    if student.dim() == 4 and student.shape[-2:] != teacher.shape[-2:]:
        size = (min(student.shape[-2], teacher.shape[-2]), min(student.shape[-1], teacher.shape[-1]))
        student, teacher = F.adaptive_avg_pool2d(student, size), F.adaptive_avg_pool2d(teacher, size)
    return F.mse_loss(student, teacher)


def _non_negative(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0


def build_feature_terms(teacher: nn.Module, student: nn.Module, input_size, device, **configs) -> list[FeatureTerm]:
    """One :class:`FeatureTerm` per ``kind=config`` whose weight is set (a null or zero-weight config builds nothing)."""
    terms = []
    for kind, config in configs.items():
        if not config:
            continue
        unknown = sorted(set(config) - set(KEYS))
        if unknown:
            raise DatafreeError(f"trainer.{kind} has unknown key(s) {unknown}: it takes {', '.join(KEYS)}.")
        if not float(config.get("weight", 0.0) or 0.0):
            continue
        terms.append(FeatureTerm(kind, teacher, student, weight=float(config["weight"]),
                                 teacher_layers=config.get("teacher_layers"), student_layers=config.get("student_layers"),
                                 pair_weights=config.get("pair_weights"), input_size=tuple(input_size), device=device))
    return terms


def check_layer_names(model: nn.Module, side: str, **configs) -> None:
    """Refuse unknown ``{side}_layers`` names of the feature terms early (before a teacher is trained, say)."""
    for config in configs.values():
        if config and float(config.get("weight", 0.0) or 0.0):
            resolve_layers(model, list(config.get(f"{side}_layers") or []), side)


def taps(terms: list[FeatureTerm], side: str) -> contextlib.ExitStack:
    """Enter every term's ``teacher`` or ``student`` capture for one forward pass."""
    stack = contextlib.ExitStack()
    for term in terms:
        stack.enter_context(term.teacher_taps if side == "teacher" else term.student_taps)
    return stack
