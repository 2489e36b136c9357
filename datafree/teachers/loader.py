"""One entry point for every teacher source: build, settle the input spec, wrap, freeze, check.

Sources (``source=``):

* ``datafree``: a checkpoint written by datafree (it carries its metadata), or
  a bare state dict of a zoo model (``arch``);
* ``module``: the user's own class or factory (``model``, a ``_target_`` node in
  recipes) plus a state dict, plain or nested, ``module.`` prefixes stripped; or,
  with ``trust_checkpoint``, a whole pickled module;
* ``torchvision``, ``timm``: any torchvision or timm classification model by ``name``, with
  a local weights file (timm is an optional extra: ``pip install timm``);
* ``torchscript``: an archive from ``torch.jit.save``;
* ``ensemble``: ``members``, each one of the above; logits are averaged.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from omegaconf import OmegaConf
from torch import nn

from datafree.errors import DatafreeError
from datafree.models.sources import label_overrides, label_source, module_label, network_from_label
from datafree.teachers.checkpoint import FORMAT, ClassifierInfo, read_checkpoint
from datafree.teachers.checks import check_logits, probe_logits, read_logits_field
from datafree.teachers.hugging_face import class_names, preprocessing
from datafree.teachers.network import Ensemble, Normalized, are_probabilities, freeze
from datafree.teachers.sources import hub_network, module_network, torchscript_network
from datafree.teachers.spec import IMAGENET_MEAN, IMAGENET_STD, DataHint, resolve_input_spec
from datafree.teachers.state_dicts import (extract_state_dict, load_weights, mismatch_fix, only_its_class,
                                          strip_wrapper_prefixes)
from datafree.teachers.weights_fit import classes_and_channels, family_fit, saved_network, shapes_of, zoo_fit
from datafree.utils.config_nodes import check_no_unset

SOURCES = ("datafree", "module", "torchvision", "timm", "torchscript", "ensemble")
# Keys a teacher recipe node may hold; the rest of a node is a typo worth reporting.
NODE_KEYS = {"source", "checkpoint", "arch", "model", "name", "members", "state_key", "trust_checkpoint",
             "num_classes", "input_size", "mean", "std", "train_if_missing", "train"}


@dataclass
class Teacher:
    """A frozen teacher ready for distillation: ``model`` takes images in [0, 1] and returns logits."""

    model: nn.Module
    info: ClassifierInfo
    notes: list[str] = field(default_factory=list)

    def __iter__(self):  # ``model, info = load_teacher(...)``
        yield self.model
        yield self.info


def load_teacher(
    source: str = "datafree",
    *,
    checkpoint: str | None = None,
    arch: str | None = None,
    model: Any = None,
    name: str | None = None,
    members: Sequence[Any] | None = None,
    state_key: str | None = None,
    trust_checkpoint: bool = False,
    num_classes: int | None = None,
    input_size: Sequence[int] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    device: str | torch.device = "cpu",
    data_hint: DataHint | None = None,
) -> Teacher:
    """Load, validate and freeze a teacher from any source (see the module docstring)."""
    if source not in SOURCES:
        raise DatafreeError(f"unknown teacher.source {source!r}: choose one of {', '.join(SOURCES)}.")
    device = torch.device(device)
    if source == "ensemble":
        return _ensemble(members, device, data_hint, num_classes)
    declared = {"input_size": _list(input_size), "mean": _list(mean), "std": _list(std)}
    convention: dict = {}
    if source == "datafree":
        net, meta, notes = _datafree_network(checkpoint, arch, num_classes, data_hint, declared["input_size"],
                                             state_key)
        label = str(arch or meta.get("arch"))
    elif source == "module":
        net, meta, notes = module_network(model, checkpoint, state_key, bool(trust_checkpoint))
        label = module_label(model, net)
        convention = preprocessing(net)  # a transformers network's folder says how its inputs were prepared
    elif source in ("torchvision", "timm"):
        if not name:
            raise DatafreeError(f"teacher.source={source} needs teacher.name, e.g. resnet50 "
                                f"({'torchvision.models.list_models()' if source == 'torchvision' else 'timm.list_models()'}).")
        size = declared["input_size"]
        net, meta, notes = hub_network(source, str(name), checkpoint, num_classes, state_key, bool(trust_checkpoint),
                                       image_size=tuple(size[1:]) if size else None)
        label = f"{source}:{name}"
        convention = _hub_convention(source, net)
    else:
        net, meta, notes = torchscript_network(checkpoint)
        label = f"torchscript:{checkpoint}"
    net = net.to(device).eval()
    size, mean_, std_, spec_notes = resolve_input_spec(net, declared=declared, meta=meta, hint=data_hint,
                                                       convention=convention)
    wrapped = freeze(Normalized(net, mean_, std_).to(device))
    field_note = read_logits_field(wrapped, size, device)
    if field_note:
        spec_notes.append(field_note)
    logits = probe_logits(wrapped, size, device)
    if are_probabilities(logits):
        wrapped.from_probabilities = True
        logits = probe_logits(wrapped, size, device)
        spec_notes.append("the teacher returns probabilities (each row sums to 1: it ends in a softmax): it is distilled "
                          "through their logarithms, its logits up to one constant per image, which every softmax "
                          "ignores")
    expected = num_classes if num_classes is not None else meta.get("num_classes")
    found = check_logits(logits, expected)
    if expected is None:
        spec_notes.append(f"number of classes not given: the teacher returns {found} logits per image")
    info = ClassifierInfo(
        arch=label, num_classes=found, input_size=size, mean=mean_, std=std_,
        classes=list(meta.get("classes") or []) or class_names(net), test_accuracy=meta.get("test_accuracy"),
        extra=dict(meta.get("extra") or {}),
    )
    return Teacher(wrapped, info, notes + spec_notes)


def _hub_convention(source: str, net: nn.Module) -> dict:
    """What a torchvision or timm network takes unless the recipe, the checkpoint or the data say otherwise:
    timm's own pretrained configuration where the model has one, else ImageNet's 224 px and normalisation."""
    cfg = getattr(net, "pretrained_cfg", None) or {}
    return {"name": source, "input_size": tuple(cfg.get("input_size") or (3, 224, 224)),
            "mean": tuple(cfg.get("mean") or IMAGENET_MEAN),
            "std": tuple(cfg.get("std") or IMAGENET_STD)}


def load_classifier(path, arch: str | None = None, num_classes: int | None = None, input_size=None, mean=None,
                    std=None, device: str | torch.device = "cpu") -> tuple[nn.Module, ClassifierInfo]:
    """A datafree checkpoint (teacher or student), or a zoo model's bare state dict, as a frozen (model, info)."""
    teacher = load_teacher("datafree", checkpoint=path, arch=arch, num_classes=num_classes, input_size=input_size,
                           mean=mean, std=std, device=device)
    return teacher.model, teacher.info


def source_of(node) -> str:
    """The source a teacher recipe node names; a node without one is a datafree checkpoint or zoo model."""
    return str(node.get("source") or "datafree")


def zoo_checkpoint_missing(node) -> bool:
    """Whether a teacher node is a datafree/zoo teacher without a checkpoint (it can only be trained)."""
    return source_of(node) == "datafree" and not node.get("checkpoint")


def teacher_from_config(node, device: str | torch.device = "cpu", data_hint: DataHint | None = None) -> Teacher:
    """:func:`load_teacher` for a recipe's ``teacher`` node (``train`` settings are not its business)."""
    unknown = sorted(set(node.keys()) - NODE_KEYS)
    if unknown:
        raise DatafreeError(f"unknown key(s) {unknown} in the teacher recipe: the keys are {sorted(NODE_KEYS)}.")
    if OmegaConf.is_config(node):
        # Keys are full paths when the node sits in a recipe ("teacher.checkpoint"), bare when it stands alone.
        check_no_unset(node, prefix="teacher.")
    get = node.get
    return load_teacher(
        source_of(node), checkpoint=_str_or_none(get("checkpoint")), arch=get("arch"),
        model=get("model"), name=get("name"), members=get("members"), state_key=get("state_key"),
        trust_checkpoint=bool(get("trust_checkpoint") or False), num_classes=get("num_classes"),
        input_size=get("input_size"), mean=get("mean"), std=get("std"), device=device, data_hint=data_hint,
    )


def _datafree_network(checkpoint, arch, num_classes, hint: DataHint | None,
                      input_size=None, state_key: str | None = None) -> tuple[nn.Module, dict, list[str]]:
    if not checkpoint:
        raise DatafreeError(
            "no teacher: set teacher.checkpoint=PATH to a checkpoint from 'datafree train-teacher' "
            "(or teacher.train_if_missing=true to train one on data.train first)."
        )
    blob = read_checkpoint(checkpoint)
    meta = blob if isinstance(blob, dict) and blob.get("format") == FORMAT else {}
    state = meta["state_dict"] if meta else extract_state_dict(blob, f"teacher.checkpoint {checkpoint!r}", state_key)
    arch = arch or meta.get("arch")
    if arch is None:
        raise DatafreeError(f"{checkpoint!r} holds weights without the network they belong to (a bare state dict); "
                            + saved_network(state, "teacher", checkpoint, "load"))
    notes = []
    classes = num_classes or meta.get("num_classes") or (hint.num_classes if hint else None)
    if classes is None:  # a bare state dict of a zoo network: its classifier's rows
        classes = classes_and_channels(shapes_of(strip_wrapper_prefixes(state)))[0]
        if classes is None:
            raise DatafreeError(f"{checkpoint!r} holds no classifier weights to count the classes from: set "
                                "teacher.num_classes.")
        notes.append(f"inferred {classes} classes from the classifier weights in {checkpoint}")
    channels = _zoo_channels(input_size or meta.get("input_size"), state, hint)
    size = input_size or meta.get("input_size")  # a network built for one size (a ViT) is built for it again
    net = network_from_label(str(arch), int(classes), channels, tuple(size[1:]) if size else None)
    if net is None:  # a checkpoint of the user's own class (e.g. a student built with student=module)
        raise only_its_class(str(arch), checkpoint, "load")
    load_weights(net, state, f"teacher.checkpoint {checkpoint!r}", f"architecture {arch!r} with {classes} classes",
                 lambda: mismatch_fix(meta, "teacher", str(arch), None, load=checkpoint)
                 or _zoo_fix(state, channels, checkpoint, str(arch)))
    return net, meta, notes


def _zoo_fix(state: dict, channels: int, checkpoint, arch: str) -> str:
    """What to set when weights that do not say what they are do not fit the network named (``arch``): the zoo
    network they fit, else the torchvision or timm network of its family they fit (resnet50 for a zoo resnet34),
    else the sources that may hold them.

    Networks are built on the meta device (no memory, no initialisation) with the class count of the weights' last
    matrix and compared key by key, shape by shape.
    """
    shapes = shapes_of(strip_wrapper_prefixes(state))
    classes, _ = classes_and_channels(shapes)
    if classes is not None:
        name = zoo_fit(shapes)
        if name is not None:
            return f"The weights are a {name} with {classes} classes: set teacher.arch={name} " \
                   f"teacher.num_classes={classes}."
        for source in ("torchvision", "timm"):  # timm's keys differ from torchvision's for most families
            name = family_fit(source, label_source(arch)[1], state)
            if name:
                return (f"The weights are {source}'s {name} with {classes} classes: load them with "
                        f"{label_overrides(f'{source}:{name}', 'teacher')} teacher.checkpoint={checkpoint}.")
    return (f"The weights fit no zoo network: if a torchvision or timm model saved them, load them with "
            f"teacher=torchvision teacher.name=NAME (or teacher=timm) teacher.checkpoint={checkpoint}; else into your "
            f"own class with teacher=module teacher.model._target_=my_pkg.MyNet teacher.checkpoint={checkpoint} "
            "(docs/custom_teacher.md).")


def _zoo_channels(input_size, state: dict, hint: DataHint | None) -> int:
    """The input channels to build a zoo network with: declared, else its weights' first convolution, else the data's."""
    if input_size:
        return int(input_size[0])
    first_conv = next((t for t in state.values() if isinstance(t, torch.Tensor) and t.dim() == 4), None)
    if first_conv is not None:
        return int(first_conv.shape[1])
    return int(hint.channels) if hint and hint.channels else 3


def _ensemble(members, device: torch.device, hint: DataHint | None, num_classes) -> Teacher:
    if not members or len(members) < 2:
        raise DatafreeError("teacher.source=ensemble needs teacher.members, a list of at least 2 teacher nodes.")
    loaded: list[Teacher] = []
    for index, member in enumerate(members):
        if isinstance(member, Teacher):
            loaded.append(member)
            continue
        try:
            loaded.append(teacher_from_config(member, device, hint) if hasattr(member, "keys") else
                          _refuse_member(member))
        except DatafreeError as error:
            raise DatafreeError(f"ensemble member {index}: {error}") from None
    shapes = {(t.info.num_classes, t.info.input_size) for t in loaded}
    if len(shapes) > 1:
        listed = "; ".join(f"member {i}: {t.info.num_classes} classes, input {list(t.info.input_size)}" for i, t in enumerate(loaded))
        raise DatafreeError(f"ensemble members must share classes and input size ({listed}): give members of one task.")
    first = loaded[0].info
    if num_classes is not None and int(num_classes) != first.num_classes:
        raise DatafreeError(f"the ensemble's members have {first.num_classes} classes but teacher.num_classes={num_classes}.")
    model = freeze(Ensemble([t.model for t in loaded]).to(device))
    info = ClassifierInfo(
        arch="ensemble[" + ", ".join(t.info.arch for t in loaded) + "]", num_classes=first.num_classes,
        input_size=first.input_size, mean=first.mean, std=first.std, classes=list(first.classes),
    )
    notes = [f"member {i}: {note}" for i, t in enumerate(loaded) for note in t.notes]
    return Teacher(model, info, notes)


def _refuse_member(member) -> Teacher:
    raise DatafreeError(f"each ensemble member is a teacher node (a mapping) or a Teacher, got {type(member).__name__}.")


def _list(value):
    return None if value is None else list(value)


def _str_or_none(value) -> str | None:
    return None if value in (None, "") else str(value)
