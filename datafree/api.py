"""The Python API: the CLI's flows for notebooks and scripts.

    import datafree
    teacher = datafree.load_teacher("module", model=MyNet(), checkpoint="my_teacher.pt")
    synthesizer = datafree.synthesizers.DeepInversion(batch_size=64, iterations=200)
    distilled = datafree.distill_student(teacher, "resnet18", synthesizer, rounds=50)
    distilled.save("student.pt")
"""
from __future__ import annotations

import dataclasses
import functools
import logging
from pathlib import Path
from typing import Any

import torch

from datafree.data import DeviceBatches, ImageDataset
from datafree.api_words import in_argument_words
from datafree.distill.trainer import Distiller, DistillResult
from datafree.errors import DatafreeError
from datafree.synthesizers.base import Synthesizer
from datafree.teachers import (ClassifierInfo, Normalized, Teacher, check_agreement, check_logits, probe_logits,
                               save_classifier)
from datafree.teachers import load_teacher as _load_teacher
from datafree.teachers.checks import check_training_output, read_logits_field
from datafree.teachers.students import build_student
from datafree.utils.device import threads_for
from datafree.utils.logging import RunLogger
from datafree.utils.seeding import seed_everything

log = logging.getLogger("datafree")


@dataclasses.dataclass
class Distilled:
    """A distilled student (takes images in [0, 1]), what it is, and how the run went."""

    student: Normalized
    info: ClassifierInfo
    result: DistillResult

    @property
    def accuracy(self) -> float | None:
        """The student's accuracy on ``test_set`` at the end (None without one)."""
        return self.result.student_accuracy

    def save(self, path: str | Path) -> Path:
        """A datafree checkpoint: ``torch.load(path, weights_only=True)`` reads it, ``load_teacher`` loads it."""
        info = dataclasses.replace(self.info, test_accuracy=self.result.student_accuracy)
        return save_classifier(path, self.student, info)


@functools.wraps(_load_teacher)
def load_teacher(*args, **kwargs) -> Teacher:
    with in_argument_words("load_teacher", "teacher"):  # its errors name its arguments, not the CLI's teacher.* keys
        return _load_teacher(*args, **kwargs)


def make_student(student: Any, teacher: ClassifierInfo, device: torch.device | str,
                 num_classes: int | None = None, log_notes: bool = True) -> tuple[Normalized, ClassifierInfo]:
    """:func:`checked_student` for Python callers: its errors name ``student``'s keys (``name``, ``checkpoint``), not
    the CLI's ``student.*``."""
    with in_argument_words("make_student", "student"):
        return checked_student(student, teacher, device, num_classes, log_notes)


def checked_student(student: Any, teacher: ClassifierInfo, device: torch.device | str,
                    num_classes: int | None = None, log_notes: bool = True) -> tuple[Normalized, ClassifierInfo]:
    """The student for ``teacher``'s task, checked on its input: a zoo name (``"resnet18"``), ``"torchvision:NAME"``,
    ``"timm:NAME"``, the user's nn.Module, or a recipe node (``source``, ``arch``/``name``/``model``, optional
    ``checkpoint`` with weights to start from). Zoo, torchvision and timm students are built for the teacher's
    classes and channels; every student takes the teacher's input size and normalisation. ``log_notes=False``: what
    its start weights needed is not logged (a check before the run builds its student)."""
    check_agreement(teacher.num_classes, teacher.input_size, student_classes=num_classes)
    net, arch = build_student(student, teacher.num_classes, teacher.input_size[0], tuple(teacher.input_size[1:]),
                              log_notes=log_notes)
    model = Normalized(net, teacher.mean, teacher.std).to(device)
    field_note = read_logits_field(model, teacher.input_size, device, who="student")
    if field_note:
        log.info(field_note)
    check_logits(probe_logits(model, teacher.input_size, device, who="student"), teacher.num_classes, who="student",
                 model=model)
    check_training_output(model, teacher.input_size, device, who="student")
    info = dataclasses.replace(teacher, arch=arch, test_accuracy=None,
                               extra={"teacher_arch": teacher.arch, "teacher_accuracy": teacher.test_accuracy})
    return model, info


def distill_student(
    teacher: Teacher,
    student: Any,
    synthesizer: Synthesizer,
    *,
    test_set: ImageDataset | None = None,
    device: str | torch.device | None = None,
    out_dir: str | Path | None = None,
    seed: int = 0,
    amp: bool = True,
    progress: bool = True,
    cpu_threads: int | str = "auto",
    **trainer_options,
) -> Distilled:
    """Distil ``teacher`` into ``student`` on ``synthesizer``'s images.

    ``trainer_options`` are the trainer recipe's keys (``rounds``,
    ``student_steps``, ``batch_size``, ``lr``, ``time_budget_s``, and the terms beside the KD loss
    ``attention``, ``hint``, ``similarity``, ``rkd``, ``discriminator`` as dicts, e.g.
    ``rkd={"distance_weight": 25}``, ...).
    ``test_set`` (real labelled images) only measures accuracy; ``out_dir`` receives
    ``summary.csv``, TensorBoard scalars and ``student.pt`` when given. A tqdm progress bar
    (which notebooks show as a widget) follows the student steps unless ``progress=False``. ``student`` is
    what :func:`make_student` takes. CPU work runs on ``cpu_threads`` threads (``auto``: half the usable
    cores, see :func:`datafree.utils.device.cpu_threads`), the previous count restored afterwards.
    """
    if not isinstance(teacher, Teacher):
        raise DatafreeError(f"teacher must come from datafree.load_teacher(...), got {type(teacher).__name__}.")
    with in_argument_words("distill_student", "student", "trainer"), threads_for(cpu_threads):
        device = torch.device(device) if device is not None else next(iter(teacher.model.buffers())).device
        teacher.model.to(device)
        seed_everything(seed)
        model, info = checked_student(student, teacher.info, device)
        tests = None
        if test_set is not None:
            if test_set.num_classes != teacher.info.num_classes or tuple(test_set.images.shape[1:]) != teacher.info.input_size:
                raise DatafreeError(
                    f"test_set is {test_set!r} but the teacher takes {list(teacher.info.input_size)} with "
                    f"{teacher.info.num_classes} classes: pass test images of the teacher's task."
                )
            tests = DeviceBatches(test_set, batch_size=1000, device=device, shuffle=False, augment=False, drop_last=False)
        logger = RunLogger(out_dir, tensorboard=True) if out_dir is not None else None
        try:
            distiller = Distiller.from_options(
                teacher.model, model, synthesizer, device=device, num_classes=teacher.info.num_classes,
                input_size=teacher.info.input_size, amp=amp, test_batches=tests, logger=logger, student_info=info,
                checkpoint_path=None if out_dir is None else Path(out_dir) / "student.pt", progress=progress,
                **trainer_options,
            )
            result = distiller.fit()
        finally:
            if logger is not None:
                logger.close()
        return Distilled(model, info, result)
