"""A student from the same sources as teachers (the zoo, torchvision, timm, the user's class), built for the
teacher's task: its head sized to the teacher's classes, its first layer to the teacher's channels; optionally
started from weights the user has (``checkpoint``, e.g. ImageNet weights on their disk)."""
from __future__ import annotations

import logging
from typing import Any

from torch import nn

from datafree.errors import DatafreeError
from datafree.models.sources import build_network, fitted_state, target_of
from datafree.teachers.checkpoint import FORMAT, read_checkpoint
from datafree.teachers.state_dicts import extract_state_dict, load_start_weights, mismatch_fix
from datafree.teachers.weights_fit import fit_change

log = logging.getLogger("datafree")
# Keys a student recipe node may hold; its input (channels and size) always follows the teacher.
STUDENT_KEYS = ("source", "arch", "name", "model", "checkpoint", "state_key", "num_classes")
# The way out of any start weights that do not fit, since a student need not start from any.
RESTART = "leave student.checkpoint out to start from random weights"


def student_spec(student: Any) -> dict:
    """A student as a recipe node's keys: from a zoo name, ``"torchvision:NAME"``, ``"timm:NAME"``, an nn.Module,
    or a node (``student=torchvision student.name=...``)."""
    if isinstance(student, str):
        source, sep, name = student.partition(":")
        return {"source": source, "name": name} if sep else {"source": "datafree", "arch": student}
    if isinstance(student, nn.Module):
        return {"source": "module", "model": student}
    if hasattr(student, "keys"):
        unknown = sorted(set(student.keys()) - set(STUDENT_KEYS))
        if unknown:
            raise DatafreeError(f"unknown key(s) {unknown} in the student recipe: its keys are {list(STUDENT_KEYS)}; the "
                                "student's input channels and size always follow the teacher's.")
        spec = {key: student.get(key) for key in STUDENT_KEYS}
        spec["source"] = spec["source"] or ("module" if spec["model"] is not None else "datafree")
        return spec
    raise DatafreeError(f"a student is a zoo name, 'torchvision:NAME', 'timm:NAME', an nn.Module or a recipe node; "
                        f"got {type(student).__name__}.")


def student_label(student: Any) -> str:
    """What names the student's network (its checkpoint's ``arch``): ``resnet18``, ``torchvision:NAME``, ...; for
    comparing two recipes' students without building them."""
    spec = student_spec(student)
    if spec["source"] in ("torchvision", "timm"):
        return f"{spec['source']}:{spec['name']}"
    if spec["source"] == "module":
        model = spec["model"]
        return target_of(model) or f"{type(model).__module__}.{type(model).__name__}"
    return str(spec.get("arch"))


def build_student(student: Any, num_classes: int, in_channels: int,
                  image_size: tuple[int, int] | None = None, log_notes: bool = True) -> tuple[nn.Module, str]:
    """(the bare network with its start weights, its label), for the teacher's classes, channels and image size
    (``image_size``: height, width); what the start weights needed is logged (``log_notes``: a check that builds the
    student before the run's own does not say it again)."""
    spec = student_spec(student)
    net, label = build_network(spec["source"], arch=spec.get("arch"), name=spec.get("name"), model=spec.get("model"),
                               num_classes=num_classes, in_channels=in_channels, image_size=image_size, what="student")
    for note in start_weights(net, label, spec):
        if log_notes:
            log.info(f"student: {note}")
    return net, label


def start_weights(net: nn.Module, label: str, spec: dict) -> list[str]:
    """``spec``'s ``checkpoint`` loaded into ``net`` as weights to start from (nothing without one); what they
    needed (a fresh head, an adapted first layer) as notes. On a meta-device ``net`` it only checks the fit."""
    checkpoint = spec.get("checkpoint")
    if not checkpoint:
        return []
    blob = read_checkpoint(checkpoint, what="student.checkpoint")
    where = f"student.checkpoint {checkpoint!r}"
    state = (blob["state_dict"] if isinstance(blob, dict) and blob.get("format") == FORMAT
             else extract_state_dict(blob, where, spec.get("state_key")))
    notes = []
    # e.g. ImageNet weights of a ViT at 224 px for a student at the teacher's 128
    state, changed = fitted_state(label, net, state)
    if changed:
        how = "timm's checkpoint filter" if label.startswith("timm:") else "torchvision's interpolate_embeddings"
        notes.append(f"{where}: {', '.join(changed[:3])}{' ...' if len(changed) > 3 else ''} resized to this "
                     f"network's input size by {how} (position embeddings resampled)")
    return notes + load_start_weights(net, state, where, f"the student {label}",
                                      lambda: mismatch_fix(blob, "student", label, fit_change(
                                          label, state, "student", "set the student to the network the weights were "
                                          "saved from"), RESTART),
                                      # its channels are the teacher's, which only the teacher changes
                                      lambda _: f"or {RESTART} (the student takes the teacher's channels)")
