"""The student loss's terms beside the KD loss, built from the trainer's options.

======================  ==================================  ==============================================
option                  terms (names in logs)               compares
======================  ==================================  ==============================================
``attention``           ``attention``                       attention maps of named layer pairs
``hint``                ``hint``                            features of named layer pairs (with adapters)
``similarity``          ``similarity``                      batch similarities of named layer pairs
``rkd``                 ``rkd_distance``, ``rkd_angle``     distances / angles between a batch's embeddings
``discriminator``       ``adversarial``                     a learned discriminator's verdict
======================  ==================================  ==============================================

A null node or a zero weight builds nothing: no hook, no module, no forward pass.

Where the teacher's side comes from is the caller's business: :meth:`Objectives.losses`
takes the teacher's logits as given (computed now or stored with the images) and reads
teacher features only from the taps of :meth:`Objectives.taps`;
:attr:`Objectives.needs_teacher_features` says whether any term reads them, i.e. whether
the terms need the teacher itself to run on the batch.
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn

from datafree.distill.discriminator import KEYS as DISCRIMINATOR_KEYS, METRICS, Adversary
from datafree.distill.features import FeatureTerm, build_feature_terms
from datafree.distill.relations import rkd_angle, rkd_distance
from datafree.errors import DatafreeError
from datafree.ops.hooks import PenultimateFeatures, require_hookable
from datafree.teachers.checks import probe_inputs

RKD_KEYS = ("distance_weight", "angle_weight", "embedding")
# What relation and adversarial terms compare: the logits, or the input of the network's last nn.Linear (its
# classifier: the zoo's linear, fc, classifier), the pooled features every CIFAR/ImageNet classifier ends in.
EMBEDDINGS = ("logits", "penultimate")


def _node(config, key: str, keys: tuple[str, ...]) -> dict:
    """A recipe node as a plain dict ({} for null), refusing keys the term does not take."""
    if not config:
        return {}
    unknown = sorted(set(config) - set(keys))
    if unknown:
        raise DatafreeError(f"trainer.{key} has unknown key(s) {unknown}: it takes {', '.join(keys)}.")
    return dict(config)


def _embedding(value, key: str) -> str:
    if value not in EMBEDDINGS:
        raise DatafreeError(f"trainer.{key}.embedding says what the term compares: 'logits' or 'penultimate' (the "
                            f"input of the network's last nn.Linear), not {value!r}.")
    return value


def _penultimate(model: nn.Module, who: str) -> PenultimateFeatures:
    what, fix = f"embedding: penultimate (the {who}'s)", "set trainer.rkd.embedding / trainer.discriminator.embedding=logits."
    require_hookable(model, what)
    if isinstance(getattr(model, "members", None), nn.ModuleList):
        raise DatafreeError(f"an ensemble {who} has no single penultimate layer (each member has its own): {fix}")
    return PenultimateFeatures(model, what, fix)


def _width(model: nn.Module, capture: PenultimateFeatures, input_size, device) -> int:
    """The width of the penultimate features, from one probe pass that moves no BatchNorm statistics."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), capture:
            model(probe_inputs(tuple(input_size), device, n=2))
        return int(capture.take().shape[1])
    finally:
        model.train(was_training)


def _weight(config: dict, name: str, key: str) -> float:
    value = config.get(name, 0.0) or 0.0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise DatafreeError(f"trainer.{key}.{name} must be a number >= 0 (0 = off), not {value!r}.")
    return float(value)


def _refuse_teacher_terms(**nodes) -> None:
    """One line for the first term that reads the teacher's layers, where no teacher runs."""
    why = "no teacher runs here (offline distillation has only the stored logits)"
    for kind in ("attention", "hint", "similarity"):
        if _weight(dict(nodes[kind] or {}), "weight", kind):
            raise DatafreeError(f"trainer.{kind} compares teacher and student layers, but {why}: set "
                                f"trainer.{kind}.weight=0 (or distil online with the teacher).")
    for kind, weights, default in (("rkd", ("distance_weight", "angle_weight"), "penultimate"),
                                   ("discriminator", ("weight",), "logits")):
        node = nodes[kind] or {}
        if any(_weight(node, name, kind) for name in weights) and node.get("embedding", default) == "penultimate":
            raise DatafreeError(f"trainer.{kind}.embedding=penultimate reads the teacher's features, but {why}: set "
                                f"trainer.{kind}.embedding=logits.")


class Objectives:
    """Feature, relation and adversarial terms of one teacher-student pair (see the module's table)."""

    def __init__(self, teacher: nn.Module | None, student: nn.Module, *, num_classes: int, input_size, device: torch.device,
                 attention=None, hint=None, similarity=None, rkd=None, discriminator=None, capturable: bool = False,
                 max_nonfinite: int):
        if teacher is None:  # the teacher's logits come stored (offline distillation): only terms on logits work
            _refuse_teacher_terms(attention=attention, hint=hint, similarity=similarity, rkd=rkd,
                                  discriminator=discriminator)
        self.features: list[FeatureTerm] = build_feature_terms(teacher, student, input_size, device, attention=attention,
                                                               hint=hint, similarity=similarity)
        rkd = _node(rkd, "rkd", RKD_KEYS)
        self.rkd = {name: w for name, w in (("rkd_distance", _weight(rkd, "distance_weight", "rkd")),
                                            ("rkd_angle", _weight(rkd, "angle_weight", "rkd"))) if w}
        self.rkd_embedding = _embedding(rkd.get("embedding", "penultimate"), "rkd") if self.rkd else None
        discriminator = _node(discriminator, "discriminator", DISCRIMINATOR_KEYS)
        weight = _weight(discriminator, "weight", "discriminator")
        self.adversary_embedding = _embedding(discriminator.get("embedding", "logits"), "discriminator") if weight else None

        # Penultimate features are captured once per side, whichever terms read them.
        self._penultimate: dict[str, PenultimateFeatures] = {}
        if "penultimate" in (self.rkd_embedding, self.adversary_embedding):
            self._penultimate = {"teacher": _penultimate(teacher, "teacher"), "student": _penultimate(student, "student")}
        self.adversary = None
        if weight:
            if self.adversary_embedding == "logits":
                widths = (num_classes, num_classes)
            else:
                widths = tuple(_width(model, self._penultimate[side], input_size, device)
                               for model, side in ((teacher, "teacher"), (student, "student")))
            options = {k: v for k, v in discriminator.items() if k not in ("weight", "embedding")}
            self.adversary = Adversary(*widths, device, weight=weight, capturable=capturable,
                                       max_nonfinite=max_nonfinite, **options)
        self.names: tuple[str, ...] = (*(term.kind for term in self.features), *self.rkd,
                                       *(("adversarial",) if self.adversary else ()))
        self.metric_names: tuple[str, ...] = METRICS if self.adversary else ()
        self.metrics: torch.Tensor | None = None  # the discriminator's [loss, accuracy] of the last step

    def describe(self, loss_name: str) -> str:
        """One log line: the terms of the student loss, and where penultimate features are read."""
        line = "student loss: " + " + ".join((loss_name, *self.names))
        if self._penultimate:
            line += "; penultimate features: the input of " + ", ".join(
                f"the {side}'s {capture.name}" for side, capture in self._penultimate.items())
        return line

    @property
    def needs_teacher_features(self) -> bool:
        """Whether a term reads the teacher's layers (then the teacher must run on the batch, inside ``taps``)."""
        return bool(self.features) or bool(self._penultimate)

    def student_modules(self) -> list[nn.Module]:
        """What trains with the student: hint adapters (the feature terms) and the discriminator's width adapter."""
        return [*self.features, *((self.adversary.adapter,) if self.adversary else ())]

    def student_parameters(self) -> list[nn.Parameter]:
        return [p for module in self.student_modules() for p in module.parameters()]

    def capture_blockers(self) -> list[str]:
        """Why a student step with these terms cannot be captured as one CUDA graph (empty: it can)."""
        blockers = []
        if self.features:
            blockers.append(f"feature terms ({'/'.join(term.kind for term in self.features)}) are on")
        if self._penultimate:
            blockers.append("penultimate features (trainer.rkd.embedding / trainer.discriminator.embedding) are read by hooks")
        return blockers

    def taps(self, side: str) -> contextlib.ExitStack:
        """Enter every capture of the ``teacher`` or ``student`` side for one forward pass."""
        stack = contextlib.ExitStack()
        for term in self.features:
            stack.enter_context(term.teacher_taps if side == "teacher" else term.student_taps)
        if side in self._penultimate:
            stack.enter_context(self._penultimate[side])
        return stack

    def losses(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every term's weighted value, by name; updates the discriminator first (its metrics: :attr:`metrics`)."""
        terms = {term.kind: term.loss() for term in self.features}
        taken: dict[str, torch.Tensor] = {}

        def embedding(kind: str, side: str) -> torch.Tensor:
            if kind == "logits":
                return (student_logits if side == "student" else teacher_logits).float()
            if side not in taken:
                taken[side] = self._penultimate[side].take()
            return taken[side]

        if self.rkd:
            student, teacher = embedding(self.rkd_embedding, "student"), embedding(self.rkd_embedding, "teacher")
            relation = {"rkd_distance": rkd_distance, "rkd_angle": rkd_angle}
            for name, weight in self.rkd.items():
                terms[name] = weight * relation[name](student, teacher)
        if self.adversary is not None:
            student, teacher = embedding(self.adversary_embedding, "student"), embedding(self.adversary_embedding, "teacher")
            self.metrics = self.adversary.update(teacher, student)
            terms["adversarial"] = self.adversary.student_loss(student)
        return terms

    def logged(self, loss_name: str) -> tuple[str, ...]:
        """What a student step returns, in order: the loss, each term when there are several, the discriminator's metrics."""
        names = (loss_name, *self.names)
        return ("loss", *(f"loss_{name}" for name in (names if len(names) > 1 else ())), *self.metric_names)

    def student_loss(self, loss_name: str, loss: torch.Tensor, student_logits: torch.Tensor,
                     teacher_logits: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The KD ``loss`` plus every term: (the total, each part by name) for the guard and :meth:`step_values`."""
        terms = {loss_name: loss, **self.losses(student_logits, teacher_logits)}
        for name, value in terms.items():
            if name != loss_name:
                loss = loss + value
        return loss, terms

    def step_values(self, total: torch.Tensor, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """The step's values in the order of :meth:`logged`, one device vector (no host read)."""
        if len(terms) == 1 and self.metrics is None:
            return total.detach().reshape(1)
        values = [total, *(terms.values() if len(terms) > 1 else ())]
        if self.metrics is not None:
            values += self.metrics.unbind()
        return torch.stack([value.detach().float().reshape(()) for value in values])

    def tensors(self) -> dict[str, torch.Tensor]:
        """Device counters to read back with the losses: the discriminator's skipped (non-finite) steps."""
        return {"discriminator_skipped": self.adversary.guard.skipped} if self.adversary else {}

    def state_dict(self) -> dict:
        """Hint adapters (``features``) and the discriminator with its optimiser (``discriminator``)."""
        return {"features": [term.state_dict() for term in self.features],
                "discriminator": self.adversary.state_dict() if self.adversary else None}

    def load_state_dict(self, state: dict) -> None:
        for term, term_state in zip(self.features, state.get("features", [])):
            term.load_state_dict(term_state)
        if self.adversary is not None:
            if not state.get("discriminator"):
                raise DatafreeError("the saved state has no discriminator, but trainer.discriminator is on: resume with "
                                    "the settings the run started with.")
            self.adversary.load_state_dict(state["discriminator"])
