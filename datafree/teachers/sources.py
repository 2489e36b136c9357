"""Where a teacher network comes from: the user's class, torchvision, timm, TorchScript, a pickle.

Each builder returns the bare network (weights loaded) and whatever metadata
the file carried; input size, classes and normalisation are settled later
(:mod:`datafree.teachers.spec`), the same way for every source.
"""
from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from datafree.errors import DatafreeError
from datafree.models.sources import build_network, build_user_module, module_label, on_meta_device, takes_image_size
from datafree.teachers.checkpoint import FORMAT, read_checkpoint, require_file
from datafree.teachers.state_dicts import extract_state_dict, load_weights, mismatch_fix, prefix_holding
from datafree.teachers.weights_fit import fit_change


def module_network(model: Any, checkpoint: str | None, state_key: str | None, trust: bool) -> tuple[nn.Module, dict, list[str]]:
    """The user's own class (or a pickled module) with its weights."""
    notes: list[str] = []
    blob = read_checkpoint(checkpoint, trust=trust) if checkpoint else None
    meta = blob if isinstance(blob, dict) and blob.get("format") == FORMAT else {}
    if model is None:
        if isinstance(blob, nn.Module):
            notes.append(f"using the pickled {type(blob).__name__} stored in {checkpoint}")
            return blob, meta, notes
        raise DatafreeError(
            "teacher.source=module needs teacher.model, the network to load the weights into, e.g. "
            "teacher.model={_target_: my_package.MyNet, num_classes: 10}."
        )
    net = build_user_module(model)
    if blob is None:
        notes.append("no teacher.checkpoint: using the weights teacher.model was built with")
        return net, meta, notes
    state = meta["state_dict"] if meta else extract_state_dict(blob, f"teacher.checkpoint {checkpoint!r}", state_key)
    load_weights(net, state, f"teacher.checkpoint {checkpoint!r}", f"teacher.model ({type(net).__name__})",
                 lambda: mismatch_fix(blob, "teacher", module_label(model, net), "make teacher.model build the "
                                      "network the weights were saved from, with the same constructor arguments",
                                      load=checkpoint))
    return net, meta, notes


def hub_network(source: str, name: str, checkpoint: str | None, num_classes: int | None, state_key: str | None,
                trust: bool, image_size: tuple[int, int] | None = None) -> tuple[nn.Module, dict, list[str]]:
    """A torchvision or timm model by ``name`` with a local weights file (nothing is downloaded); the classes
    and input channels are read from the weights when not given. ``image_size`` (teacher.input_size's height and
    width) builds a network made for one size (a ViT) at that size. A datafree checkpoint's metadata (input size,
    normalisation, classes) is returned as read from the file, as for the other sources."""
    notes: list[str] = []
    state = blob = None
    meta: dict = {}
    channels = 3
    if checkpoint:
        blob = read_checkpoint(checkpoint, trust=trust)
        meta = blob if isinstance(blob, dict) and blob.get("format") == FORMAT else {}
        if image_size is None and meta.get("input_size"):
            image_size = tuple(int(v) for v in meta["input_size"][1:])
        num_classes = num_classes if num_classes is not None else meta.get("num_classes")
        state = extract_state_dict(blob, f"teacher.checkpoint {checkpoint!r}", state_key)
        first = next((t for t in state.values() if isinstance(t, torch.Tensor) and t.dim() == 4), None)
        channels = int(first.shape[1]) if first is not None else 3
        if num_classes is None:
            num_classes = _classes_in_head(on_meta_device(lambda: build_network(
                source, name=name, num_classes=1000, in_channels=channels, what="teacher")[0]), state,
                f"teacher.checkpoint {checkpoint!r}")
            if num_classes is not None:
                notes.append(f"inferred {num_classes} classes from the classifier weights in {checkpoint}")
    else:
        notes.append(f"no teacher.checkpoint: {source} {name} has random weights")
    net, _ = build_network(source, name=name, num_classes=int(num_classes or 1000), in_channels=channels,
                           image_size=image_size, what="teacher")
    if state is not None:
        sized = (" A network built for one input size takes it from teacher.input_size=[channels, height, width]: set "
                 "it to the size the weights were trained at." if takes_image_size(source, name) else "")
        load_weights(net, state, f"teacher.checkpoint {checkpoint!r}", f"{source} {name}",
                     lambda: mismatch_fix(blob, "teacher", f"{source}:{name}", fit_change(
                         f"{source}:{name}", state, "teacher", f"set teacher.name to the {source} model the weights "
                         "were saved from (and teacher.num_classes)"), load=checkpoint)
                     + sized)
    return net, meta, notes


def _classes_in_head(net: nn.Module, state: dict, where: str) -> int | None:
    """Rows of the final nn.Linear's weight in ``state``: the number of classes the file was trained for."""
    linears = [n for n, m in net.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        return None
    prefix = prefix_holding(state, net.state_dict().keys(), where)  # e.g. a Lightning module's "model."
    weight = state.get(f"{prefix}{linears[-1]}.weight")
    return int(weight.shape[0]) if weight is not None and weight.dim() == 2 else None


def torchscript_network(path: str | None) -> tuple[nn.Module, dict, list[str]]:
    """A TorchScript archive, as handed over by another team; no Python class is needed."""
    import torch

    if not path:
        raise DatafreeError("teacher.source=torchscript needs teacher.checkpoint=PATH to the archive (torch.jit.save).")
    require_file(path, "teacher.checkpoint", "the TorchScript archive")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated in favour of torch.export
            net = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - jit raises RuntimeError/ValueError for non-archives
        raise DatafreeError(
            f"{str(path)!r} is not a TorchScript archive ({type(exc).__name__}: {str(exc).splitlines()[0][:160]}): "
            "save one with torch.jit.save(torch.jit.script(model), path), or use teacher.source=module for a state dict."
        ) from None
    notes = ["TorchScript teacher: forward hooks cannot attach to it, so BatchNorm-statistics priors and feature "
             "taps are unavailable (synthesizer=dfad works, and zskt without trainer.attention)"]
    return net, {}, notes
