"""Where a network comes from, for teachers and students alike: the zoo, torchvision, timm or the user's class.

:func:`build_network` returns the bare network with its head sized to ``num_classes`` and its first
layer taking ``in_channels``, and a label that names it in checkpoints (``resnet18``,
``torchvision:mobilenet_v3_large``, ``timm:resnet18``, ``my_pkg.MyNet``); :func:`network_from_label`
builds a zoo, torchvision or timm network again from its label. Nothing is downloaded: torchvision
and timm build random weights, and weights come from a file the user names.
"""
from __future__ import annotations

import difflib
from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from datafree.errors import DatafreeError, first_line
from datafree.models import create_model
from datafree.recipe_nodes import PUBLISHED, recipe_defaults

SOURCES = ("datafree", "torchvision", "timm", "module")  # "datafree": the zoo (datafree.models)


def build_network(source: str, *, arch: str | None = None, name: str | None = None, model: Any = None,
                  num_classes: int, in_channels: int = 3, image_size: tuple[int, int] | None = None,
                  what: str = "student") -> tuple[nn.Module, str]:
    """(network, label) from ``source``: the zoo's ``arch``, torchvision's or timm's ``name``, or ``model`` (a
    recipe node with ``_target_``, an nn.Module or a factory: built as given, its head is the user's to size).

    ``image_size`` (height, width) is what the network will take; only networks built for one size need it (a
    torchvision ViT, timm's fixed-size models: see :func:`takes_image_size`), None builds them at their own."""
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
        return build(str(name), num_classes, in_channels, what, image_size), f"{source}:{name}"
    if source == "module":
        net = build_user_module(model, what)
        return net, module_label(model, net)
    raise DatafreeError(f"unknown {what}.source {source!r}: choose one of {', '.join(SOURCES)}.")


def network_from_label(label: str, num_classes: int, in_channels: int,
                       image_size: tuple[int, int] | None = None) -> nn.Module | None:
    """The zoo, torchvision or timm network a checkpoint's ``arch`` label names (random weights), built for
    ``image_size`` where that matters; None for a label of the user's own class, which only that class can build."""
    source, name = label_source(label)
    if source == "module":
        return None
    if source == "datafree":
        return create_model(name, num_classes=num_classes, in_channels=in_channels)  # an unknown name says so
    return build_network(source, name=name, num_classes=num_classes, in_channels=in_channels, image_size=image_size,
                         what="teacher")[0]


def label_source(label: str) -> tuple[str, str]:
    """(source, name) of a network's label: ``("torchvision", "resnet18")`` for ``torchvision:resnet18``, likewise
    timm; ``("module", "pkg.Class")`` for the user's class (a dotted name); ``("datafree", "resnet18")`` for the zoo."""
    source, sep, name = str(label).partition(":")
    if sep and source in ("torchvision", "timm"):
        return source, name
    return ("module" if "." in str(label) else "datafree"), str(label)


def label_overrides(label: str, what: str) -> str:
    """The command-line overrides that make ``what`` (``student`` or ``teacher``) the network ``label`` names (a
    checkpoint's ``arch``): ``student=torchvision student.name=resnet18``, ``teacher=module
    teacher.model._target_=pkg.Net``, ... A zoo network is its own recipe's where one holds it (``student=wrn16_1``),
    else the zoo's resnet18 recipe with its arch changed, which every zoo classifier takes."""
    source, name = label_source(label)
    if source in ("torchvision", "timm"):
        return f"{what}={source} {what}.name={name}"
    if name.startswith("transformers."):  # made from a folder (save_pretrained), which the label does not name
        return (f"{what}=transformers {what}.name=DIR (the folder it was made from, with the settings it was made "
                f"with, e.g. +{what}.model.num_labels=N)")
    if source == "module":
        return f"{what}=module {what}.model._target_={name}"
    try:
        own = recipe_defaults(f"{what}/{name}").get("arch") == name
    except FileNotFoundError:
        own = False
    return f"{what}={name}" if own else f"{what}=resnet18 {what}.arch={name}"


def module_label(model: Any, net: nn.Module) -> str:
    """The label of the user's network: its recipe node's ``_target_``, else its class's dotted name."""
    return str(target_of(model) or f"{type(net).__module__}.{type(net).__name__}")


# torchvision networks whose constructor needs more than the class count to train as a plain classifier: GoogLeNet
# and Inception-v3 return their auxiliary classifiers' logits as well in training mode (a namedtuple) unless built
# without them (datafree trains and distils the main classifier only); a ViT takes only the size it was built for.
AUXILIARY_HEADS = {"googlenet": ("aux1.", "aux2."), "inception_v3": ("AuxLogits.",)}


def takes_image_size(source: str, name: str) -> bool:
    """Whether a torchvision or timm network is built for one input size (a torchvision ViT, a timm model whose
    configuration says ``fixed_input_size``), so that :func:`build_network` needs ``image_size``."""
    if source == "torchvision":
        return str(name).startswith("vit_")
    if source == "timm":
        cfg = _timm_config(str(name))
        return bool(cfg is not None and getattr(cfg, "fixed_input_size", False))
    return False


def torchvision_network(name: str, num_classes: int, in_channels: int, what: str,
                        image_size: tuple[int, int] | None = None) -> nn.Module:
    import torchvision

    available = torchvision.models.list_models(module=torchvision.models)
    if name not in available:
        close = difflib.get_close_matches(name, available, n=4)
        raise DatafreeError(f"torchvision has no classification model {name!r}: set {what}.name to one of "
                            f"{close or available[:10]}{'' if close else ' ...'} (torchvision.models.list_models()).")
    options: dict[str, Any] = {}
    if name in AUXILIARY_HEADS:  # init_weights=True: torchvision's present initialisation, without its warning
        options.update(aux_logits=False, init_weights=True)
    if image_size is not None and takes_image_size("torchvision", name):
        height, width = (int(v) for v in image_size)
        if height != width:
            raise DatafreeError(f"torchvision's {name} takes square images only, and the input here is "
                                f"{height}x{width}: choose another {what}.name (e.g. a timm ViT, which takes any shape).")
        options["image_size"] = height
    try:
        net = torchvision.models.get_model(name, weights=None, num_classes=int(num_classes), **options)
    except (TypeError, ValueError, AssertionError) as exc:  # a ViT asserts that its patches tile the image
        size = f" at {options['image_size']}x{options['image_size']}" if "image_size" in options else ""
        raise DatafreeError(f"torchvision could not build {name!r} for {num_classes} classes{size} "
                            f"({first_line(exc)}): choose another {what}.name.") from None
    return first_conv_to(net, in_channels, f"torchvision {name}")


def _timm_config(name: str):
    """timm's pretrained configuration of ``name`` (None without one, or without timm)."""
    try:
        import timm
        return timm.models.get_pretrained_cfg(name)
    except Exception:  # noqa: BLE001 - no timm, or a name timm has no configuration for
        return None


def timm_network(name: str, num_classes: int, in_channels: int, what: str,
                 image_size: tuple[int, int] | None = None) -> nn.Module:
    timm = require_timm(what)
    available = timm.list_models()
    if name not in available:
        close = difflib.get_close_matches(name, available, n=4)
        raise DatafreeError(f"timm has no model {name!r}: set {what}.name to one of {close or available[:10]}"
                            f"{'' if close else ' ...'} (timm.list_models()).")
    options: dict[str, Any] = {}
    if image_size is not None and takes_image_size("timm", name):
        own = tuple(getattr(_timm_config(name), "input_size", ())[1:])
        if own != tuple(int(v) for v in image_size):
            options["img_size"] = tuple(int(v) for v in image_size)  # timm resizes its position embeddings to it
    try:  # pretrained=False: timm never downloads; weights come from {what}.checkpoint
        return timm.create_model(name, pretrained=False, num_classes=int(num_classes), in_chans=int(in_channels),
                                 **options)
    except Exception as exc:  # noqa: BLE001 - timm raises many kinds for arguments a model refuses
        if torch.get_default_device().type == "meta":
            raise  # what the meta device refused: on_meta_device builds it on the CPU, where a real error is said
        size = f" at {options['img_size'][0]}x{options['img_size'][1]}" if options else ""
        raise DatafreeError(f"timm could not build {name!r} for {num_classes} classes and {in_channels} input "
                            f"channel(s){size} ({first_line(exc)}): choose another {what}.name.") from None


def fitted_state(label: str, net: nn.Module, state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """``state`` fitted to ``net`` (built as ``label`` says) where its source knows how: a torchvision ViT's or a timm
    network's position embeddings resampled to the size ``net`` was built for; the keys whose shape that changed."""
    if label.startswith("timm:"):
        return timm_fitted_state(net, state)
    if label.startswith("torchvision:"):
        return torchvision_fitted_state(net, state)
    return state, []


def torchvision_fitted_state(net: nn.Module, state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """``state`` for a torchvision ViT built for another size than the one it was saved at (ImageNet's 224 px for a
    student at the teacher's 64): its position embeddings resampled by torchvision's own ``interpolate_embeddings``,
    as a square grid of patches (the only input such a ViT takes). Any other network, or a state that is not a square
    grid, is returned as it is (the loader then says what differs)."""
    from torchvision.models.vision_transformer import VisionTransformer, interpolate_embeddings

    key = "encoder.pos_embedding"
    own = net.state_dict().get(key)
    saved = state.get(key)
    if not isinstance(net, VisionTransformer) or own is None or saved is None or saved.shape == own.shape:
        return state, []
    try:
        fitted = interpolate_embeddings(net.image_size, net.patch_size, OrderedDict(state))
    except ValueError:  # a sequence that is not a square grid of patches: not a torchvision ViT's
        return state, []
    return dict(fitted), [key] if fitted[key].shape == own.shape else []


def timm_fitted_state(net: nn.Module, state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """``state`` fitted to the timm network ``net`` as timm's own loader fits pretrained weights (its model module's
    ``checkpoint_filter_fn``: position embeddings resampled to the size ``net`` was built for, among others), and the
    keys whose shape that changed; ``state`` as it is where the module has no filter or its filter refuses."""
    import sys

    filter_fn = getattr(sys.modules.get(type(net).__module__), "checkpoint_filter_fn", None)
    if filter_fn is None:
        return state, []
    try:
        fitted = filter_fn(dict(state), net)
    except Exception:  # noqa: BLE001 - a filter for other formats: the weights are checked as they are
        return state, []
    changed = [k for k, v in fitted.items() if k in state and tuple(v.shape) != tuple(state[k].shape)]
    return fitted, changed


def require_timm(what: str):
    try:
        import timm
    except ImportError:
        raise DatafreeError(f"{what}=timm needs timm, which is not installed: {PUBLISHED['timm']}.") from None
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
            if torch.get_default_device().type == "meta":
                raise  # what the meta device refused (from_pretrained loads weights): on_meta_device builds it on the CPU
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
    checks on networks of any size). A constructor that computes with tensors cannot run there (torchvision's RegNet
    reads its block widths back from one): such a network is built on the CPU instead, with the random streams put
    back afterwards, so that the check still draws nothing."""
    try:
        with torch.device("meta"):
            return build()
    except DatafreeError:
        raise
    except Exception:  # noqa: BLE001 - whatever the meta device refused; a real error recurs on the CPU, said there
        with torch.random.fork_rng(devices=[]):
            return build()
