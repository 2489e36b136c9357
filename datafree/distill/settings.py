"""The Distiller's settings: the trainer recipe's keys, and what a run writes.

:class:`TrainerSettings` holds exactly the keys of a trainer recipe (``trainer.lr``,
``trainer.time_budget_s``, ...). Their defaults live in one place, ``recipes/trainer/default.yaml``:
the CLI composes recipes on top of it, and :meth:`TrainerSettings.from_options` (what
``datafree.distill_student(**trainer_options)`` and the recipes' ``_target_`` use) reads from it
every key it is not given. :class:`Outputs` is what one run measures and writes, which no recipe sets.
"""
from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from datafree.config_checks import check_values
from datafree.errors import DatafreeError
from datafree.recipe_nodes import instantiate_node, recipe_defaults
from datafree.teachers import ClassifierInfo
from datafree.utils.logging import RunLogger
from datafree.utils.run_state import StateFiles


@dataclass
class TrainerSettings:
    """Every key of a trainer recipe; ``recipes/trainer/default.yaml`` says what each one does."""

    # How long: rounds x student_steps student updates, or until time_budget_s.
    rounds: int
    student_steps: int
    time_budget_s: float | None
    eval_every: int  # rounds between evaluations (and student.pt saves)
    log_every: int  # student steps between loss read-backs
    # The student step.
    batch_size: int
    loss: Any  # KDLoss, LogitL1Loss, ...
    cuda_graphs: bool
    sync_batchnorm: bool
    bn_momentum: float | str  # auto (raise any below 0.1 to 0.1), keep, or a number in (0, 1]
    # The synthetic batches of an online run: replayed share, memory bank, augmentation, out of memory.
    replay: float
    pool_capacity: int | str  # images, or auto: sized from the free device memory
    augment: Any  # an Augment
    halve_synthesis_on_oom: bool
    # The student's optimiser (cosine schedule over the run, after warmup_steps of linear warm-up).
    optimizer: str
    lr: float
    warmup_steps: int
    momentum: float
    weight_decay: float
    decay_norm_and_bias: bool  # false: weight_decay spares the parameters of one dimension (biases, norms)
    clip_grad_norm: float | None
    ema_decay: float  # 0: off; else the running average of the weights is evaluated and delivered (averaging.py)
    ema_bn_batches: int  # the average's BatchNorm statistics re-estimated over this many batches before each evaluation
    # The terms beside the loss (distill/objectives.py), each off at weight 0.
    attention: dict | None
    hint: dict | None
    similarity: dict | None
    rkd: dict | None
    discriminator: dict | None
    # Reliability (docs/reliability.md).
    checkpoint_every: int
    max_nonfinite: int

    @classmethod
    def check_names(cls, given: Iterable[str]) -> None:
        """Refuse options the trainer lacks, naming the one meant (``roundz``: ``rounds``). The CLI's checks call it
        on the recipe's trainer node before any work (the trainer itself is built only after the teacher)."""
        names = [field.name for field in dataclasses.fields(cls)]
        unknown = sorted(set(given) - set(names))
        if unknown:
            meant = difflib.get_close_matches(unknown[0], names, n=1)
            guess = f" (trainer.{unknown[0]}: did you mean trainer.{meant[0]}?)" if meant else ""
            raise DatafreeError(f"unknown trainer option(s) {unknown}{guess}: the options are {', '.join(sorted(names))}.")

    @classmethod
    def from_options(cls, **options) -> "TrainerSettings":
        """The given keys, and the default trainer recipe's value for every other one."""
        cls.check_names(options)
        names = [field.name for field in dataclasses.fields(cls)]
        defaults = recipe_defaults("trainer/default")
        values = {name: options[name] if name in options else defaults[name] for name in names}
        check_values({"trainer": {k: v for k, v in values.items() if k not in ("loss", "augment")}})  # the CLI's rules
        for name in ("loss", "augment"):  # recipe nodes (``_target_``) become objects; given objects stay
            if isinstance(values[name], dict) and "_target_" in values[name]:
                values[name] = instantiate_node(values[name], f"trainer.{name}")
        return cls(**values)

    def terms(self) -> dict:
        """The terms' nodes, as :class:`~datafree.distill.objectives.Objectives` takes them."""
        return {name: getattr(self, name) for name in ("attention", "hint", "similarity", "rkd", "discriminator")}


@dataclass
class Outputs:
    """What one run measures and writes: evaluation batches, logs, student.pt, the sample grid, the full state."""

    test_batches: Iterable | None = None
    logger: RunLogger | None = None  # None: a disabled logger (nothing written)
    student_info: ClassifierInfo | None = None  # metadata written with student.pt
    checkpoint_path: str | Path | None = None  # student.pt
    grid_path: str | Path | None = None  # samples.png
    progress: bool = True
    state: StateFiles | None = None  # full-state checkpoints (resume)
    warn_collapse: bool = True  # a warning when the student gives one class to nearly every test image; off for a
                                # baseline meant to sit at chance (the noise baseline)

    @classmethod
    def split(cls, options: dict) -> tuple["Outputs", dict]:
        """(the outputs among flat ``options``, the rest)."""
        names = {field.name for field in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in options.items() if k in names}), {k: v for k, v in options.items() if k not in names}

