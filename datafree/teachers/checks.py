"""Checks run on a loaded network before any work: it runs, its outputs are sane, sizes agree.

The probe batch comes from its own random generator, so checking a model
never shifts the run's random stream.
"""
from __future__ import annotations

import torch
from torch import nn

from datafree.errors import DatafreeError
from datafree.teachers.hugging_face import logits_field
from datafree.teachers.network import Normalized, are_probabilities
from datafree.teachers.spec import runs_on
from datafree.utils.untouched import untouched

PROBE_BATCH = 4


def probe_inputs(input_size: tuple[int, int, int], device: torch.device | str, n: int = PROBE_BATCH) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.rand(n, *input_size, generator=generator).to(device)


def read_logits_field(model: nn.Module, input_size: tuple[int, int, int], device, who: str = "teacher") -> str | None:
    """A wrapped network whose forward returns its logits inside an output object (a Hugging Face transformers
    classifier's ModelOutput, a dict holding ``logits``) is set to return that field (``Normalized.logits_field``);
    the note saying so, or None. Run before the other checks, which then see a tensor; a network that does not run
    is left for :func:`probe_logits` to report. Nothing of the pass stays."""
    if not isinstance(model, Normalized) or model.logits_field is not None:
        return None
    with untouched(model, device):
        model.eval()
        try:
            with torch.no_grad():
                output = model(probe_inputs(input_size, device))
        except Exception:  # noqa: BLE001 - probe_logits runs it again and says what is wrong
            return None
    field = logits_field(output)
    if field is None:
        return None
    model.logits_field = field
    return f"the {who} returns a {type(output).__name__}: its {field!r} are read as the {who}'s logits"


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
        fix = (f"set {who}.input_size=[channels, height, width] to the size it was trained on" if who == "teacher" else
               # A student takes what the teacher takes: zoo students are built for it, a module of the user's must fit.
               f"the {who} must take the teacher's inputs ({'x'.join(map(str, input_size))}, channels x height x "
               "width): choose a network that can (zoo, torchvision and timm students are built for the teacher's "
               "channels; some networks need larger images than these)")
        raise DatafreeError(
            f"the {who} does not run on inputs of shape {shape} ({type(exc).__name__}: {message}): {fix}."
        ) from None
    finally:
        model.train(was_training)
    if not isinstance(output, torch.Tensor):
        raise DatafreeError(
            f"the {who} returns a {type(output).__name__}, not a tensor of logits: wrap it in a module whose forward "
            "returns only the logits (e.g. output[0]; an output holding them as 'logits' is read without one)."
        )
    if output.dim() != 2 or output.shape[0] != PROBE_BATCH:
        raise DatafreeError(
            f"the {who} returns a tensor of shape {tuple(output.shape)} for {PROBE_BATCH} images; a classifier returns "
            f"({PROBE_BATCH}, num_classes): check {who}.input_size or wrap the model so it returns logits."
        )
    return output.float()


def check_training_output(model: nn.Module, input_size: tuple[int, int, int], device, who: str = "student",
                          num_classes: int | None = None) -> None:
    """One forward pass in training mode, the mode a student (or a teacher being trained) learns in: there too it
    must return a tensor of logits, one row per image. A network that returns more there (a class of the user's
    giving (logits, features), a GoogLeNet with its auxiliary classifiers) fails here in one line rather than in its
    first step. Nothing of the pass stays (buffers, modes, random streams: :func:`~datafree.utils.untouched.untouched`)."""
    shape = (PROBE_BATCH, *input_size)
    with untouched(model, device):
        model.train()
        try:
            with torch.no_grad():
                output = model(probe_inputs(input_size, device))
        except Exception as exc:  # noqa: BLE001 - what differs from evaluation mode is the user's to fix
            message = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            if not runs_on(model.eval(), input_size):  # train-teacher had not probed it: not a question of modes
                raise DatafreeError(f"the {who} does not run on inputs of shape {shape} ({type(exc).__name__}: {message}): "
                                    f"it must take {'x'.join(map(str, input_size))} images (channels x height x width), "
                                    f"the data's: build it for them (a class of yours: with the arguments next to "
                                    f"{who}.model._target_).") from None
            raise DatafreeError(f"the {who} runs in evaluation mode but not in training mode on inputs of shape {shape} "
                                f"({type(exc).__name__}: {message}): its forward must run in both.") from None
    if not isinstance(output, torch.Tensor):
        raise DatafreeError(
            f"the {who} returns a {type(output).__name__} in training mode, not a tensor of logits: wrap it in a module "
            "whose forward returns only the logits in both modes (e.g. output[0])."
        )
    if output.dim() != 2 or output.shape[0] != PROBE_BATCH:
        raise DatafreeError(f"the {who} returns a tensor of shape {tuple(output.shape)} for {PROBE_BATCH} images in "
                            f"training mode; a classifier returns ({PROBE_BATCH}, num_classes) in both modes.")
    if are_probabilities(output):  # cross-entropy and distillation would take them for logits and barely move
        raise DatafreeError(f"the {who} returns probabilities in training mode (each row sums to 1: it ends in a "
                            "softmax), and it learns from its logits: remove the final softmax from its forward (apply "
                            "it when you use the network, or use a module that returns the layer before it).")
    if num_classes is not None and output.shape[1] != int(num_classes):
        raise DatafreeError(f"the {who} returns {output.shape[1]} logits per image but the data has {num_classes} "
                            f"classes: build it with {num_classes} outputs ({head_hint(model, who, num_classes)}).")


def head_hint(model: nn.Module, who: str, num_classes: int) -> str:
    """How to build the user's network (a ``{who}.model`` node) with ``num_classes`` outputs: a transformers
    classifier takes ``num_labels`` (and a new head over weights made for other classes), a class of the user's
    its own argument."""
    net = model.model if isinstance(model, Normalized) else model
    if hasattr(getattr(net, "config", None), "num_labels"):
        return (f"a transformers classifier: +{who}.model.num_labels={num_classes} "
                f"+{who}.model.ignore_mismatched_sizes=true, and its head starts fresh")
    return f"e.g. num_classes: {num_classes} next to {who}.model._target_"


def check_logits(logits: torch.Tensor, num_classes: int | None, who: str = "teacher",
                 model: nn.Module | None = None) -> int:
    """The number of classes the logits show, after checking they are finite and match ``num_classes`` (for a
    student, the teacher's: ``model`` is the student, whose builder the message names)."""
    if not torch.isfinite(logits).all():
        check = (f"check {who}.checkpoint on real inputs and {who}.mean / {who}.std" if who == "teacher" else
                 f"check the {who} network's weights and the teacher's normalisation, which the {who} shares")
        raise DatafreeError(
            f"the {who} returns NaN or Inf on random images in [0, 1]: its weights are damaged or its normalisation "
            f"is wrong; {check}."
        )
    found = int(logits.shape[1])
    if found < 2 and who == "teacher":  # distillation matches softmax distributions: one logit has none
        raise DatafreeError(
            "the teacher returns one logit per image: datafree distils classifiers with two or more classes (a softmax). "
            "A binary classifier with one (sigmoid) output can be wrapped to return two logits, torch.cat([torch.zeros_"
            "like(z), z], 1), whose softmax is its sigmoid (teacher=module: docs/custom_teacher.md)."
        )
    if num_classes is not None and int(num_classes) != found and who == "student":
        raise DatafreeError(f"the student returns {found} logits per image but the teacher has {num_classes} classes: "
                            f"build it with {num_classes} outputs ({head_hint(model, who, int(num_classes))}).")
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
        shown = f"the test images are {'x'.join(map(str, data_size))} (channels x height x width) but the teacher takes " \
                f"{'x'.join(map(str, input_size))}"
        if data_size[0] != input_size[0]:
            raise DatafreeError(f"{shown}: set data.channels={input_size[0]} (or null to follow the teacher), or use the "
                                "teacher's own kind of data.")
        resize = (f"set data.image_size={input_size[1]} to resize the test images" if input_size[1] == input_size[2] else
                  f"use test images of {input_size[1]}x{input_size[2]} pixels (height x width), read at their own size "
                  "with data.image_size=auto (a number resizes them to a square)")
        raise DatafreeError(f"{shown}: {resize}, or set teacher.input_size if the teacher takes another size.")
