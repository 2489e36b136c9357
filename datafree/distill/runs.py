"""A distill run's saved parts, for commands that start from one (``synthesize from_run=RUN``).

A run's full state (``state_last.pt``, written by :class:`~datafree.distill.trainer.Distiller`) holds
the student, the synthesizer's state (e.g. a trained generator) and the resolved recipe. This is
the one place that reads another command's state file: callers get the parts, never the format.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from datafree.distill.pool import oldest_first
from datafree.errors import DatafreeError, first_line
from datafree.teachers.students import student_label
from datafree.utils.run_state import FORMAT, LAST


@dataclass
class DistillRun:
    file: Path  # the state file read
    config: dict  # the run's resolved recipe
    student_state: dict
    synthesizer_state: dict  # what the run's synthesizer saved (empty when it keeps nothing)
    # The run's replay pool: uint8 images its synthesizer made (None for an offline run, empty without replay), in
    # storage order, and where the next image would have been written (once the pool wrapped, its oldest image).
    pool_images: torch.Tensor | None = None
    pool_next: int = 0

    def pool_by_age(self) -> torch.Tensor | None:
        """The pool's images, oldest first."""
        return None if self.pool_images is None else oldest_first(self.pool_images, self.pool_next)

    def require(self, synthesizer_target: str | None, student: str | None) -> None:
        """Refuse a recipe whose synthesizer class or student (its label, e.g. ``torchvision:NAME``) is not the run's."""
        run_target = (self.config.get("synthesizer") or {}).get("_target_")
        run_student = student_label(self.config["student"]) if self.config.get("student") else None
        if synthesizer_target and run_target and run_target != synthesizer_target:
            raise DatafreeError(f"from_run: the run used synthesizer {run_target}, this recipe {synthesizer_target}: give "
                                "the run's experiment or synthesizer recipe (e.g. the same experiment=...).")
        if student and run_student and run_student != student:
            raise DatafreeError(f"from_run: the run's student is {run_student}, this recipe's {student}: give the run's "
                                "student recipe (the same student=... and its keys, or the run's experiment=...).")

    def load_student(self, student: nn.Module) -> None:
        """The run's trained student weights into ``student`` (built by the same recipe)."""
        try:
            student.load_state_dict(self.student_state)
        except (KeyError, RuntimeError) as exc:
            raise DatafreeError(f"from_run: the student saved in {self.file} does not fit this recipe's "
                                f"({first_line(exc)}): give the run's own recipe settings.") from None


def load_distill_run(path: str | Path) -> DistillRun:
    """The parts of the distill run in folder ``path`` (its ``state_last.pt``) or in the state file ``path``."""
    path = Path(path).expanduser()
    file = path / LAST if path.is_dir() else path
    if not path.exists():
        raise DatafreeError(f"from_run={path} does not exist: point it at the folder of a distill run.")
    if not file.is_file():
        raise DatafreeError(f"from_run={path} holds no {LAST}: point it at the folder of a distill run that saved its "
                            "state (trainer.checkpoint_every > 0, or a finished run).")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - damaged or foreign file
        raise DatafreeError(f"from_run: {file} cannot be read ({type(exc).__name__}): it is damaged or not a datafree "
                            "state file.") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT or state.get("kind") != "distill" \
            or "student" not in state:
        raise DatafreeError(f"from_run: {file} is not the state of a datafree distill run: point at a distill run's folder.")
    pool = state.get("pool")
    return DistillRun(file, state.get("config") or {}, state["student"], state.get("synthesizer") or {},
                      pool.get("images") if isinstance(pool, dict) else None,
                      int(pool.get("next", 0)) if isinstance(pool, dict) else 0)

