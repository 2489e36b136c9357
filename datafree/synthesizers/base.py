"""What every synthesizer is: ``synthesize() -> Batch`` of images in [0, 1]."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import nn

from datafree.errors import DatafreeError
from datafree.ops.pixels import quantise


@dataclass
class Batch:
    """Synthetic inputs as handed to the trainer (and, later, to an exporter).

    ``images`` are detached, in [0, 1], on the synthesizer's device; ``targets``
    are the classes the synthesizer aimed for (None if it aimed for none). The
    teacher's logits are not part of it: the student step recomputes them on its
    augmented inputs, so computing them here would cost a teacher pass per round for nothing.
    """

    images: torch.Tensor
    targets: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.images.shape[0]

    def to_uint8(self) -> torch.Tensor:
        """The images as they would be written to disk."""
        return quantise(self.images)


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
    # Room left per class when a data set is written (datafree synthesize sets it): see draw_targets.
    class_weights: torch.Tensor | None = None
    # Whether its images are made for classes it draws (draw_targets): then a class the teacher rarely gives them is
    # the teacher's or the synthesis's, not the aim's.
    aims_at_classes: bool = False
    # The last round's loss terms (device scalars), which the trainer logs as synth/<name> with its own losses.
    last_losses: dict[str, torch.Tensor] = {}
    # Synthesis steps skipped for a non-finite loss so far (a device scalar), where the synthesizer optimises.
    skipped_steps: torch.Tensor | None = None

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

    def draw_targets(self, n: int) -> torch.Tensor:
        """The classes to aim the next ``n`` images at, for synthesizers that aim at classes.

        Every class equally often, or, while a data set with a class histogram is written,
        in proportion to ``class_weights`` (the room left per class).
        """
        if self.class_weights is None or not float(self.class_weights.sum()) > 0:
            return balanced_targets(n, self.num_classes, self.device)
        return proportional_targets(n, self.class_weights, self.device)

    def backward_batch(self) -> tuple[int, bool]:
        """Images one synthesis step back-propagates through the teacher, and whether through the student as well
        (a disagreement term): what the CPU's memory check (:func:`~datafree.distill.preflight.check_host_memory`)
        sizes the step by. ``(0, False)`` for a method that back-propagates nothing."""
        return 0, False

    def sample(self, n: int) -> torch.Tensor | None:
        """Fresh images without a synthesis update, or None where that is not cheap."""
        return None

    def follow_schedule(self, factor: float) -> None:
        """Called with the student's learning-rate multiplier (1 at the start, 0 at the end) before each
        student step; synthesizers whose own optimiser should anneal with the student override it."""

    @property
    def sample_capturable(self) -> bool:
        """Whether a student step that calls :meth:`sample` may be captured in a CUDA graph (the same
        modules and buffers every round, updated in place)."""
        return True

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


def proportional_targets(n: int, weights: torch.Tensor, device) -> torch.Tensor:
    """``n`` classes in proportion to ``weights`` (CPU; largest remainders round), in random order."""
    share = weights.double() / weights.double().sum() * n
    counts = share.floor().long()
    missing = n - int(counts.sum())
    if missing:
        counts[torch.argsort(share - counts, descending=True, stable=True)[:missing]] += 1
    targets = torch.repeat_interleave(torch.arange(weights.numel()), counts).to(device)
    return targets[torch.randperm(n, device=device)]
