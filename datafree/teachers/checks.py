"""Checks run on a loaded network before any work: it runs, its outputs are sane, sizes agree.

The probe batch comes from its own random generator, so checking a model
never shifts the run's random stream.
"""
from __future__ import annotations

import torch
from torch import nn

from datafree.errors import DatafreeError

PROBE_BATCH = 4


def probe_inputs(input_size: tuple[int, int, int], device: torch.device | str, n: int = PROBE_BATCH) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.rand(n, *input_size, generator=generator).to(device)


def probe_logits(model: nn.Module, input_size: tuple[int, int, int], device, who: str = "teacher") -> torch.Tensor:
    """One forward pass on a small batch of random images in [0, 1]; the logits, or one clear error."""
    shape = (PROBE_BATCH, *input_size)
    was_training = model.training
    model.eval()  # BatchNorm running statistics must not move
    try:
        with torch.no_grad():
            output = model(probe_inputs(input_size, device))
    except Exception as exc:  # noqa: BLE001 - any failure here is a shape/dtype mismatch for the user to fix
        message = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise DatafreeError(
            f"the {who} does not run on inputs of shape {shape} ({type(exc).__name__}: {message}): "
            f"set {who}.input_size=[channels, height, width] to the size it was trained on."
        ) from None
    finally:
        model.train(was_training)
    if not isinstance(output, torch.Tensor):
        raise DatafreeError(
            f"the {who} returns a {type(output).__name__}, not a tensor of logits: wrap it in a module whose forward "
            "returns only the logits (e.g. output[0] or output.logits)."
        )
    if output.dim() != 2 or output.shape[0] != PROBE_BATCH:
        raise DatafreeError(
            f"the {who} returns a tensor of shape {tuple(output.shape)} for {PROBE_BATCH} images; a classifier returns "
            f"({PROBE_BATCH}, num_classes): check {who}.input_size or wrap the model so it returns logits."
        )
    return output.float()


def check_logits(logits: torch.Tensor, num_classes: int | None, who: str = "teacher") -> int:
    """The number of classes the logits show, after checking they are finite and match ``num_classes``."""
    if not torch.isfinite(logits).all():
        raise DatafreeError(
            f"the {who} returns NaN or Inf on random images in [0, 1]: its weights are damaged or its normalisation "
            f"is wrong; check {who}.checkpoint on real inputs and {who}.mean / {who}.std."
        )
    found = int(logits.shape[1])
    if num_classes is not None and int(num_classes) != found:
        raise DatafreeError(
            f"the {who} returns {found} logits per image but {who}.num_classes={num_classes}: "
            f"set {who}.num_classes={found} or load the matching weights."
        )
    return found


def check_agreement(teacher_classes: int, input_size: tuple[int, int, int], *, data_classes: int | None = None,
                    data_size: tuple[int, int, int] | None = None, student_classes: int | None = None) -> None:
    """The teacher, the data set and the student must agree on classes and image shape."""
    if data_classes is not None and data_classes != teacher_classes:
        raise DatafreeError(
            f"the teacher has {teacher_classes} classes but the data set has {data_classes} (data.num_classes): "
            "choose data whose classes are the teacher's, or the teacher trained on this data."
        )
    if student_classes is not None and student_classes != teacher_classes:
        raise DatafreeError(
            f"the student is set to {student_classes} classes but the teacher has {teacher_classes}: "
            f"set student.num_classes={teacher_classes} (or null to follow the teacher)."
        )
    if data_size is not None and tuple(data_size) != tuple(input_size):
        raise DatafreeError(
            f"the test images are {'x'.join(map(str, data_size))} (channels x height x width) but the teacher takes "
            f"{'x'.join(map(str, input_size))}: use data of the teacher's size (data.image_size) or set teacher.input_size."
        )
