"""Which network do these weights fit? Asked only when weights do not fit the network a run names, so that the error
can say what to set instead of listing the keys that differ.

Candidates are built on the meta device (shapes only: no memory, no initialisation) with the class count of the
weights' last matrix and the channels of their first convolution, and compared key by key, shape by shape. Weights
given to the wrong network mostly come from a sibling (resnet34 weights for a resnet18, efficientnet_b0 for _b1), so
only the named network's family is searched, nearest names first, within a few seconds: a hint must not cost a minute.
"""
from __future__ import annotations

import difflib
import re
import time

import torch

from datafree.errors import DatafreeError
from datafree.models.sources import build_network, label_overrides, label_source, on_meta_device
from datafree.teachers.state_dicts import prefix_holding, strip_wrapper_prefixes

# A hint's search stops after this many seconds (timm's vit_* family alone is over 200 models, about 20 s to build).
SEARCH_S = 5.0
SOURCES = ("torchvision", "timm")


def shapes_of(state: dict) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)}


def classes_and_channels(shapes: dict[str, tuple[int, ...]]) -> tuple[int | None, int]:
    """The class count of the weights' last matrix (their classifier, as saved) and the input channels of their
    first convolution (3 without one)."""
    matrices = [shape for shape in shapes.values() if len(shape) == 2]
    convs = [shape for shape in shapes.values() if len(shape) == 4]
    return (matrices[-1][0] if matrices else None), (convs[0][1] if convs else 3)


def family_candidates(source: str, name: str) -> list[str]:
    """The models of ``source`` (torchvision or timm) in ``name``'s family (its name's leading letters: resnet,
    efficientnet, mobilenet...), the nearest names first."""
    family = re.match(r"[a-z]*", name.lower()).group()
    if not family:
        return []
    if source == "torchvision":
        import torchvision

        names = torchvision.models.list_models(module=torchvision.models)
    elif source == "timm":
        try:
            import timm
        except ImportError:
            return []
        names = timm.list_models()
    else:
        return []
    found = [n for n in names if family in n.replace("_", "").lower()]
    return sorted(found, key=lambda n: -difflib.SequenceMatcher(None, n, name).ratio())


def family_fit(source: str, name: str, state: dict, what: str) -> str | None:
    """The model of ``name``'s family in ``source`` whose weights have exactly ``state``'s keys and shapes, or None
    (none found within :data:`SEARCH_S`)."""
    shapes = shapes_of(strip_wrapper_prefixes(state))
    classes, channels = classes_and_channels(shapes)
    if classes is None:
        return None
    deadline = time.monotonic() + SEARCH_S
    for candidate in family_candidates(source, name):
        if time.monotonic() > deadline:
            return None
        try:
            net = on_meta_device(lambda: build_network(source, name=candidate, num_classes=classes,
                                                       in_channels=channels, what=what)[0])
        except Exception:  # noqa: BLE001 - a model that cannot be built so is not the one
            continue
        own = shapes_of(net.state_dict())
        try:  # a Lightning module's "model.", a wrapper's "net.": the keys under the prefix that holds them all
            prefix = prefix_holding(shapes, own.keys(), what)
        except DatafreeError:  # held under two prefixes: the loader names them itself
            prefix = ""
        held = {k[len(prefix):]: v for k, v in shapes.items() if k.startswith(prefix)} if prefix else shapes
        if held == own:
            return candidate
    return None


def fit_change(label: str, state: dict, what: str, otherwise: str) -> str:
    """What to set when ``state`` does not fit the torchvision or timm network ``label`` names: the model of its
    family the weights fit, in its source, else in the other one (timm's resnet18 given to teacher=torchvision),
    else ``otherwise``."""
    source, name = label_source(label)
    if source not in SOURCES:
        return otherwise
    for other in (source, *(s for s in SOURCES if s != source)):
        found = family_fit(other, name, state, what)
        if found is not None:
            how = f"{what}.name={found}" if other == source else label_overrides(f"{other}:{found}", what)
            return f"the weights are {other}'s {found}: set {how}"
    return otherwise
