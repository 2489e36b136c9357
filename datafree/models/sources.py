"""Where a network comes from, for teachers and students alike: the zoo, torchvision, timm or the user's class.

:func:`build_network` returns the bare network with its head sized to ``num_classes`` and its first
layer taking ``in_channels``, and a label that names it in checkpoints (``resnet18``,
``torchvision:mobilenet_v3_large``, ``timm:resnet18``, ``my_pkg.MyNet``); :func:`network_from_label`
builds a zoo, torchvision or timm network again from its label. Nothing is downloaded: torchvision
and timm build random weights, and weights come from a file the user names.
"""
from __future__ import annotations

import difflib
from typing import Any

import torch
from torch import nn

from datafree.errors import DatafreeError, first_line
from datafree.models import create_model

SOURCES = ("datafree", "torchvision", "timm", "module")  # "datafree": the zoo (datafree.models)
TIMM_EXTRA = 'timm is not installed: install it with pip install "datafree[timm]" (or pip install timm)'


def build_network(source: str, *, arch: str | None = None, name: str | None = None, model: Any = None,
                  num_classes: int, in_channels: int = 3, what: str = "student") -> tuple[nn.Module, str]:
    """(network, label) from ``source``: the zoo's ``arch``, torchvision's or timm's ``name``, or ``model`` (a
    recipe node with ``_target_``, an nn.Module or a factory: built as given, its head is the user's to size)."""
    if source == "datafree":
        if not arch:
            raise DatafreeError(f"{what}.arch names a zoo network (e.g. resnet18): set it, or choose another source "
                                f"({what}=torchvision {what}.name=..., {what}=timm, {what}=module).")
        return create_model(str(arch), num_classes=num_classes, in_channels=in_channels), str(arch)
    if source in ("torchvision", "timm"):
        if not name:
            example = "mobilenet_v3_large" if source == "torchvision" else "resnet18"
            raise DatafreeError(f"{what}={source} needs {what}.name, e.g. {what}.name={example}.")
        build = torchvision_network if source == "torchvision" else timm_network
        return build(str(name), num_classes, in_channels, what), f"{source}:{name}"
    if source == "module":
        net = build_user_module(model, what)
        return net, target_of(model) or f"{type(net).__module__}.{type(net).__name__}"
    raise DatafreeError(f"unknown {what}.source {source!r}: choose one of {', '.join(SOURCES)}.")


def network_from_label(label: str, num_classes: int, in_channels: int) -> nn.Module | None:
    """The zoo, torchvision or timm network a checkpoint's ``arch`` label names (random weights); None for a
    label of the user's own class, which only that class can build."""
    source, _, name = str(label).partition(":")
    if name and source in ("torchvision", "timm"):
        return build_network(source, name=name, num_classes=num_classes, in_channels=in_channels, what="teacher")[0]
    if "." in label:  # pkg.Class
        return None
    return create_model(label, num_classes=num_classes, in_channels=in_channels)  # an unknown name says so


def torchvision_network(name: str, num_classes: int, in_channels: int, what: str) -> nn.Module:
    import torchvision

    available = torchvision.models.list_models(module=torchvision.models)
    if name not in available:
        close = difflib.get_close_matches(name, available, n=4)
        raise DatafreeError(f"torchvision has no classification model {name!r}: set {what}.name to one of "
                            f"{close or available[:10]}{'' if close else ' ...'} (torchvision.models.list_models()).")
    try:
        net = torchvision.models.get_model(name, weights=None, num_classes=int(num_classes))
    except (TypeError, ValueError) as exc:
        raise DatafreeError(f"torchvision could not build {name!r} for {num_classes} classes ({first_line(exc)}).") from None
    return first_conv_to(net, in_channels, f"torchvision {name}")


def timm_network(name: str, num_classes: int, in_channels: int, what: str) -> nn.Module:
    timm = require_timm(what)
    available = timm.list_models()
    if name not in available:
        close = difflib.get_close_matches(name, available, n=4)
        raise DatafreeError(f"timm has no model {name!r}: set {what}.name to one of {close or available[:10]}"
                            f"{'' if close else ' ...'} (timm.list_models()).")
    try:  # pretrained=False: timm never downloads; weights come from {what}.checkpoint
        return timm.create_model(name, pretrained=False, num_classes=int(num_classes), in_chans=int(in_channels))
    except Exception as exc:  # noqa: BLE001 - timm raises many kinds for arguments a model refuses
        raise DatafreeError(f"timm could not build {name!r} for {num_classes} classes and {in_channels} input "
                            f"channel(s) ({first_line(exc)}): choose another {what}.name.") from None


def require_timm(what: str):
    try:
        import timm
    except ImportError:
        raise DatafreeError(f"{what}=timm needs timm, but {TIMM_EXTRA}.") from None
    return timm


def first_conv_to(net: nn.Module, channels: int, what: str) -> nn.Module:
    """``net`` with its first convolution taking ``channels`` channels (torchvision builds RGB networks only)."""
    first = next(((n, m) for n, m in net.named_modules() if isinstance(m, nn.Conv2d)), None)
    if first is None or first[1].in_channels == channels:
        return net
    name, conv = first
    if conv.groups != 1:
        raise DatafreeError(f"{what} starts with a grouped convolution, which cannot take {channels} channel(s): "
                            "choose another network, or convert the images (data.channels=3).")
    new = nn.Conv2d(channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                    bias=conv.bias is not None, padding_mode=conv.padding_mode)
    parent_name, _, child = name.rpartition(".")
    setattr(net.get_submodule(parent_name) if parent_name else net, child, new)
    return net


def build_user_module(model: Any, what: str = "teacher") -> nn.Module:
    """An ``nn.Module``, a factory returning one, or a recipe node ``{_target_: pkg.Class, ...}``."""
    from datafree.recipe_nodes import recipe_error

    if isinstance(model, nn.Module):
        return model
    target = target_of(model)
    if target is not None:
        from hydra.errors import InstantiationException
        from hydra.utils import instantiate

        try:
            built = instantiate(model, _convert_="all")
        except Exception as exc:  # noqa: BLE001 - hydra wraps import and constructor errors alike
            known = recipe_error(exc, model, f"{what}.model") if isinstance(exc, InstantiationException) else exc
            if isinstance(known, DatafreeError):
                raise known from None
            # The user's own constructor failing for any other reason is still theirs to fix.
            raise DatafreeError(f"building {what}.model ({target}) failed: {type(exc.__cause__ or exc).__name__}: "
                                f"{first_line(exc.__cause__ or exc, 200)}; fix the arguments given next to _target_.") from None
    elif callable(model):
        built = model()
    else:
        raise DatafreeError(f"{what}.model must be a recipe node with _target_ (your class or factory), an nn.Module or "
                            f"a factory; got {type(model).__name__}.")
    if not isinstance(built, nn.Module):
        raise DatafreeError(f"{what}.model built a {type(built).__name__}, not an nn.Module: point _target_ at the "
                            "network class.")
    return built


def target_of(node: Any) -> str | None:
    try:
        return node.get("_target_") if hasattr(node, "get") else None
    except Exception:  # noqa: BLE001 - omegaconf raises on some missing-key accesses
        return None


def on_meta_device(build):
    """``build()`` with parameters on PyTorch's meta device: shapes and names without memory or random draws (layer
    checks on networks of any size)."""
    with torch.device("meta"):
        return build()
