"""What every synthesizer is: ``synthesize() -> Batch`` of images in [0, 1]."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import nn

from datafree.errors import DatafreeError


@dataclass
class Batch:
    """Synthetic inputs as handed to the trainer (and, later, to an exporter).

    ``images`` are detached, in [0, 1], on the synthesizer's device; ``targets``
    are the classes the synthesizer aimed for (None if it aimed for none);
    ``teacher_logits`` are the teacher's outputs on ``images`` without augmentation.
    """

    images: torch.Tensor
    targets: torch.Tensor | None = None
    teacher_logits: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.images.shape[0]

    def to_uint8(self) -> torch.Tensor:
        """The images as they would be written to disk."""
        return (self.images.clamp(0, 1) * 255).round().to(torch.uint8)


class Synthesizer(ABC):
    """Invents inputs for a frozen teacher.

    The trainer calls :meth:`bind` once, then :meth:`synthesize` each round.
    Synthesizers that can draw fresh samples cheaply (generators) also
    implement :meth:`sample`, which the student step uses.
    """

    teacher: nn.Module
    student: nn.Module
    num_classes: int
    input_size: tuple[int, int, int]
    device: torch.device

    def bind(self, teacher: nn.Module, student: nn.Module, num_classes: int,
             input_size: tuple[int, int, int], device: torch.device) -> None:
        self.teacher, self.student = teacher, student
        self.num_classes, self.input_size, self.device = int(num_classes), tuple(input_size), device
        self.validate()

    def validate(self) -> None:
        """Raise a DatafreeError before any work if the teacher cannot serve this method."""
        self.check_teacher(self.teacher)

    def check_teacher(self, teacher: nn.Module) -> None:
        """Raise a DatafreeError if this method cannot serve ``teacher`` (no BatchNorm, no hooks, ...).

        Needs nothing but the teacher, so a job calls it before it builds the student.
        """

    @abstractmethod
    def synthesize(self) -> Batch:
        """Do one round of synthesis work and return the new batch."""

    def sample(self, n: int) -> torch.Tensor | None:
        """Fresh images without a synthesis update, or None where that is not cheap."""
        return None

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        del state


def check_loss_weights(method: str, **weights: float) -> None:
    """Every synthesizer's rule: weights are >= 0 (0 switches a term off) and at least one is on."""
    negative = {k: v for k, v in weights.items() if v < 0}
    if negative:
        raise DatafreeError(f"{method} loss weights must be >= 0, got {negative}: set a weight to 0 to switch its term off.")
    if not any(weights.values()):
        raise DatafreeError(f"every {method} loss weight is 0, so nothing would be optimised: switch at least one term on.")


def balanced_targets(n: int, num_classes: int, device, generator: torch.Generator | None = None) -> torch.Tensor:
    """Every class equally often (up to one), in random order: better coverage than randint."""
    targets = torch.arange(n, device=device) % num_classes
    return targets[torch.randperm(n, device=device, generator=generator)]
