"""The Distiller's settings, in groups that mirror the loop: how long it runs, what the student
learns from and towards, which terms join the KD loss, how it is optimised, what the run writes,
how it survives failures.

Recipes and ``datafree.distill_student(**trainer_options)`` give the same settings as one
flat set of keys (``trainer.lr``, ``trainer.time_budget_s``, ...); :func:`group_options`
sorts them into the groups by field name, so a key's name is the same in both places.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from datafree.errors import DatafreeError
from datafree.teachers import ClassifierInfo
from datafree.utils.logging import RunLogger
from datafree.utils.run_state import StateFiles


@dataclass
class Schedule:
    """How long the loop runs, and when it evaluates and reads losses back."""

    rounds: int = 100  # synthesis rounds
    student_steps: int = 10  # student updates per round
    time_budget_s: float | None = None  # stop (and finish the LR schedule) after this many seconds
    eval_every: int = 10  # rounds between evaluations (and student.pt saves)
    log_every: int = 50  # student steps between loss read-backs


@dataclass
class Objective:
    """What a student update trains on (batch size, replay share, pool, augmentation) and towards (loss terms)."""

    batch_size: int = 256
    replay: float = 0.5  # fraction of each student batch drawn from the replay pool
    pool_capacity: int = 50_000
    augment: Any = None  # an Augment; None: jitter 2, flip
    loss: Any = None  # a KD loss (KDLoss, LogitL1Loss, ...); None: KDLoss()
    cuda_graphs: bool = False  # the update as one CUDA graph on a GPU (no kornia augmentation, no hooked terms)
    sync_batchnorm: bool = False  # under torchrun: the student's BatchNorm statistics over the global batch (GPUs)


@dataclass
class Terms:
    """The student loss's terms beside ``loss``, each off when null or of weight 0 (:mod:`datafree.distill.objectives`)."""

    attention: dict | None = None  # attention transfer: {weight, teacher_layers, student_layers, pair_weights}
    hint: dict | None = None  # FitNets hints: {weight, teacher_layers, student_layers, pair_weights}
    similarity: dict | None = None  # similarity-preserving KD: {weight, teacher_layers, student_layers, pair_weights}
    rkd: dict | None = None  # relational KD: {distance_weight, angle_weight, embedding}
    discriminator: dict | None = None  # adversarial KD: {weight, embedding, hidden, arch, optimizer, lr, betas, ..., steps, every}


@dataclass
class Optimiser:
    """The student's optimiser; the learning rate follows a cosine schedule over the run."""

    optimizer: str = "sgd"  # or "adam"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    clip_grad_norm: float | None = None  # rescale the gradient to at most this L2 norm (ZSKT: 5); None: off


@dataclass
class Outputs:
    """What the run measures and writes: evaluation batches, logs, student.pt, the sample grid."""

    test_batches: Iterable | None = None
    logger: RunLogger | None = None  # None: a disabled logger (nothing written)
    student_info: ClassifierInfo | None = None  # metadata written with student.pt
    checkpoint_path: str | Path | None = None  # student.pt
    grid_path: str | Path | None = None  # samples.png
    progress: bool = True


@dataclass
class Reliability:
    """Full-state checkpoints, non-finite steps and out-of-memory handling (docs/reliability.md)."""

    state: StateFiles | None = None
    checkpoint_every: int = 1000  # student steps between full-state checkpoints; 0: only on a signal and at the end
    max_nonfinite: int = 20  # skipped student steps in a row before the run stops
    halve_synthesis_on_oom: bool = False


GROUPS = {"schedule": Schedule, "objective": Objective, "terms": Terms, "optimiser": Optimiser, "outputs": Outputs,
          "reliability": Reliability}
OPTION_NAMES = sorted(f.name for group in GROUPS.values() for f in dataclasses.fields(group))


def group_options(options: dict) -> dict:
    """Flat options (recipe keys) as one instance per group: ``{"schedule": Schedule(...), ...}``."""
    unknown = sorted(set(options) - set(OPTION_NAMES))
    if unknown:
        raise DatafreeError(f"unknown trainer option(s) {unknown}: the options are {', '.join(OPTION_NAMES)}.")
    return {name: group(**{f.name: options[f.name] for f in dataclasses.fields(group) if f.name in options})
            for name, group in GROUPS.items()}
