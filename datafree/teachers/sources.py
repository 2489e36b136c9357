"""Where a teacher network comes from: the user's class, torchvision, TorchScript, a pickle.

Each builder returns the bare network (weights loaded) and whatever metadata
the file carried; input size, classes and normalisation are settled later
(:mod:`datafree.teachers.spec`), the same way for every source.
"""
from __future__ import annotations

import difflib
import warnings
from typing import Any

from torch import nn

from datafree.errors import DatafreeError
from datafree.recipe_nodes import recipe_error
from datafree.teachers.checkpoint import FORMAT, read_checkpoint, require_file
from datafree.teachers.state_dicts import extract_state_dict, load_weights


def build_user_module(model: Any) -> nn.Module:
    """An ``nn.Module``, a factory returning one, or a recipe node ``{_target_: pkg.Class, ...}``."""
    if isinstance(model, nn.Module):
        return model
    target = target_of(model)
    if target is not None:
        from hydra.errors import InstantiationException
        from hydra.utils import instantiate

        try:
            built = instantiate(model, _convert_="all")
        except Exception as exc:  # noqa: BLE001 - hydra wraps import and constructor errors alike
            known = recipe_error(exc, model, "teacher.model") if isinstance(exc, InstantiationException) else exc
            if isinstance(known, DatafreeError):
                raise known from None
            # The user's own constructor failing for any other reason is still theirs to fix.
            cause = exc.__cause__ or exc
            raise DatafreeError(
                f"building teacher.model ({target}) failed: {type(cause).__name__}: {str(cause).splitlines()[0][:200]}; "
                "fix the arguments given next to _target_."
            ) from None
    elif callable(model):
        built = model()
    else:
        raise DatafreeError(
            f"teacher.model must be a recipe node with _target_ (your class or factory), an nn.Module or a factory; "
            f"got {type(model).__name__}."
        )
    if not isinstance(built, nn.Module):
        raise DatafreeError(f"teacher.model built a {type(built).__name__}, not an nn.Module: point _target_ at the network class.")
    return built


def target_of(node: Any) -> str | None:
    try:
        return node.get("_target_") if hasattr(node, "get") else None
    except Exception:  # noqa: BLE001 - omegaconf raises on some missing-key accesses
        return None


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
                 f"Make teacher.model build the network the weights were saved from ({type(net).__name__} here), "
                 "with the same constructor arguments.")
    return net, meta, notes


def torchvision_network(name: str, checkpoint: str | None, num_classes: int | None, state_key: str | None,
                        trust: bool) -> tuple[nn.Module, dict, list[str]]:
    """``torchvision.models.get_model(name)`` with a local weights file (nothing is downloaded)."""
    import torchvision

    available = torchvision.models.list_models(module=torchvision.models)
    if name not in available:
        close = difflib.get_close_matches(str(name), available, n=4)
        raise DatafreeError(
            f"torchvision has no classification model {name!r}: set teacher.name to one of "
            f"{close or available[:10]}{'' if close else ' ...'} (torchvision.models.list_models())."
        )
    notes: list[str] = []
    state = None
    if checkpoint:
        blob = read_checkpoint(checkpoint, trust=trust)
        state = extract_state_dict(blob, f"teacher.checkpoint {checkpoint!r}", state_key)
        if num_classes is None:
            num_classes = _classes_in_head(torchvision.models.get_model(name, weights=None), state)
            if num_classes is not None:
                notes.append(f"inferred {num_classes} classes from the classifier weights in {checkpoint}")
    else:
        notes.append(f"no teacher.checkpoint: torchvision {name} has random weights")
    kwargs = {} if num_classes is None else {"num_classes": int(num_classes)}
    try:
        net = torchvision.models.get_model(name, weights=None, **kwargs)
    except (TypeError, ValueError) as exc:
        raise DatafreeError(f"torchvision could not build {name!r} with {kwargs}: {exc}; change teacher.num_classes.") from None
    if state is not None:
        load_weights(net, state, f"teacher.checkpoint {checkpoint!r}", f"torchvision {name}",
                     "Set teacher.name to the torchvision model the weights were saved from (and teacher.num_classes).")
    return net, {}, notes


def _classes_in_head(net: nn.Module, state: dict) -> int | None:
    """Rows of the final nn.Linear's weight in ``state``: the number of classes the file was trained for."""
    linears = [n for n, m in net.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        return None
    weight = state.get(f"{linears[-1]}.weight")
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
