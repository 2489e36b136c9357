"""Which network do these weights fit? Asked only when weights do not fit the network a run names, or name none (a
bare state dict), so that the error can say what to set instead of listing the keys that differ.

Candidates are built on the meta device (shapes only: no memory, no initialisation) with the class count of the
weights' last matrix and the channels of their first convolution, and compared key by key, shape by shape. Weights
given to the wrong network mostly come from a sibling (resnet34 weights for a resnet18, efficientnet_b0 for _b1), so
only the named network's family is searched, nearest names first, within a few seconds: a hint must not cost a minute.
Weights that name no network are searched for in the zoo, all of torchvision and, in timm, among the models whose stem
and head their keys hold, the family likest theirs first.
"""
from __future__ import annotations

import difflib
import functools
import math
import re
import time

import torch

from datafree.errors import DatafreeError
from datafree.models.sources import AUXILIARY_HEADS, build_network, label_overrides, label_source
from datafree.teachers.state_dicts import strip_wrapper_prefixes

# A hint's search stops after this many seconds (timm's vit_* family alone is over 200 models, about 20 s to build).
SEARCH_S = 5.0
# Weights that name no network at all (a bare state dict) are searched for longer: the zoo, all of torchvision's
# classifiers (about 2 s) and the timm models whose stem and head their keys hold.
NETWORK_SEARCH_S = 10.0
SOURCES = ("torchvision", "timm")


def shapes_of(state: dict) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)}


def classes_and_channels(shapes: dict[str, tuple[int, ...]]) -> tuple[int | None, int]:
    """The class count of the weights' classifier, as saved last (a matrix, or a 1x1 convolution: SqueezeNet's, DLA's,
    timm's ResNetV2), and the input channels of their first convolution (3 without one); weights only (a ViT's
    ``pos_embed`` is neither)."""
    weights = [shape for key, shape in shapes.items() if key.endswith("weight")]
    heads = [shape for shape in weights if len(shape) == 2 or (len(shape) == 4 and shape[2:] == (1, 1))]
    convs = [shape for shape in weights if len(shape) == 4]
    return (heads[-1][0] if heads else None), (convs[0][1] if convs else 3)


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


def family_fit(source: str, name: str, state: dict) -> str | None:
    """The model of ``name``'s family in ``source`` whose weights have exactly ``state``'s keys and shapes, or None
    (none found within :data:`SEARCH_S`)."""
    shapes = shapes_of(strip_wrapper_prefixes(state))
    return next(_fits(source, family_candidates(source, name), shapes, _clock() + SEARCH_S), None)


def _clock() -> float:
    """The time a search counts: this process's, so that a machine busy with other work gets the same answer later
    rather than another one."""
    return time.process_time()


def _fits(source: str, candidates, shapes: dict[str, tuple[int, ...]], deadline: float):
    """Those of ``candidates`` (models of ``source``) whose weights have exactly ``shapes``, in order, built with the
    class count and input channels the shapes give, until ``deadline`` (:func:`_clock`) passes. A torchvision family
    whose first member built names its first tensor by a key the weights lack is not built further: every member of
    a torchvision family names it alike (``features.0.0.weight``, ``conv1.weight``; a test holds torchvision to it),
    and building all of its classifiers takes most of a search's seconds on a slow CPU."""
    first_keys: dict[str, str] = {}
    for candidate in candidates:
        if _clock() > deadline:
            return
        family = _family(candidate) if source == "torchvision" else None
        if family in first_keys and not _names(shapes, first_keys[family]):
            continue
        own = _built_shapes(source, candidate, shapes)
        if own is None:
            continue
        if family is not None and own:
            first_keys.setdefault(family, next(iter(own)))
        if _holds(_without_auxiliary_heads(shapes, source, candidate), own):
            yield candidate


def _without_auxiliary_heads(shapes: dict[str, tuple[int, ...]], source: str, name: str):
    """A GoogLeNet's or Inception-v3's weights without its auxiliary classifiers, which datafree builds it without
    (and leaves out when it loads them)."""
    heads = AUXILIARY_HEADS.get(name, ()) if source == "torchvision" else ()
    return {k: v for k, v in shapes.items() if not any(k.startswith(h) or f".{h}" in k for h in heads)}


def _built_shapes(source: str, name: str, shapes: dict[str, tuple[int, ...]]):
    """The weights' shapes of ``source``'s model ``name`` built for ``shapes``' classes and channels, on the meta
    device (no memory, no initialisation); None where it cannot be built. torchvision's RegNets read a tensor back
    while they are built, so they are built on the CPU instead, and only those no larger than the weights (their
    ImageNet weights' parameter count, which torchvision states, says so before building: the largest is 2.6 GB).
    The result is shared, not copied: callers only read it."""
    classes, channels = classes_and_channels(shapes)
    if classes is None:
        return None
    built = _shapes_when_built(source, name, classes, channels, on_meta=True)
    if built is None and source == "torchvision" and _no_larger_than(name, shapes):
        built = _shapes_when_built(source, name, classes, channels, on_meta=False)
    return built


@functools.lru_cache(maxsize=4096)
def _shapes_when_built(source: str, name: str, classes: int, channels: int, on_meta: bool):
    """:func:`_built_shapes`' build, remembered for the process: one search builds a timm family's first member to
    order the families and again to compare it, the namesakes' search builds some of them a second time, and an
    error's message searches the weights its check searched. The shapes of a few thousand models are a few MB."""
    # Built for real, the random streams stay as they were.
    where = torch.device("meta") if on_meta else torch.random.fork_rng(devices=[])
    try:
        with where:
            net = build_network(source, name=name, num_classes=classes, in_channels=channels)[0]
    except Exception:  # noqa: BLE001 - a model that cannot be built so is not the one
        return None
    return shapes_of(net.state_dict())


def _no_larger_than(name: str, shapes: dict[str, tuple[int, ...]]) -> bool:
    """Whether torchvision's ``name``, as its ImageNet weights' metadata counts it, has at most about as many
    parameters as ``shapes`` (its 1,000-class head allowed for)."""
    import torchvision

    try:
        counts = [w.meta["num_params"] for w in torchvision.models.get_model_weights(name)]
    except (ValueError, KeyError):
        return False
    held = sum(math.prod(shape) for shape in shapes.values())
    return bool(counts) and min(counts) <= 1.1 * held + 4 * 10**6


def _names(shapes: dict[str, tuple[int, ...]], key: str) -> bool:
    """Whether ``shapes`` hold ``key``, bare or under a prefix (as :func:`_holds` reads them)."""
    return key in shapes or any(k.endswith("." + key) for k in shapes)


def _holds(shapes: dict[str, tuple[int, ...]], own: dict[str, tuple[int, ...]]) -> bool:
    """Whether ``shapes`` are exactly a network's ``own``, bare or under a prefix (a Lightning module's ``model.``, a
    wrapper's ``net.``; where two prefixes hold it, ``model.`` and ``model_ema.``, either: the loader then asks which)."""
    if shapes == own:
        return True
    anchor = next(iter(own), None)
    if anchor is None:
        return False
    for prefix in {k[: -len(anchor)] for k in shapes if k.endswith("." + anchor)}:
        if {k[len(prefix):]: v for k, v in shapes.items() if k.startswith(prefix)} == own:
            return True
    return False


def zoo_fit(shapes: dict[str, tuple[int, ...]]) -> str | None:
    """The zoo network (``student.arch``/``teacher.arch`` names) whose weights are exactly ``shapes``, or None."""
    from datafree.models import create_model, list_models

    classes, channels = classes_and_channels(shapes)
    if classes is None:
        return None
    with torch.device("meta"):
        for name in list_models():
            try:
                own = create_model(name, num_classes=classes, in_channels=channels).state_dict()
            except DatafreeError:  # a generator, or a network without in_channels
                continue
            if shapes_of(own) == shapes:
                return name
    return None


def timm_stem_and_head(shapes: dict[str, tuple[int, ...]]) -> list[str]:
    """timm's models whose first convolution and classifier, as their pretrained configuration names them, are
    among ``shapes``' weights (under one prefix, if any), shortest names first: a filter that builds nothing."""
    try:
        import timm
        from timm.models import get_pretrained_cfg
    except ImportError:
        return []
    found = []
    for name in timm.list_models():
        cfg = get_pretrained_cfg(name)
        heads = cfg.classifier if isinstance(cfg.classifier, (list, tuple)) else [cfg.classifier]
        first = cfg.first_conv[0] if isinstance(cfg.first_conv, (list, tuple)) and cfg.first_conv else cfg.first_conv
        if not first or not heads or not heads[0]:
            continue
        stem = f"{first}.weight"
        prefixes = {k[: -len(stem)] for k in shapes if k == stem or k.endswith("." + stem)}
        if any(all(f"{p}{h}.weight" in shapes for h in heads) for p in prefixes):
            found.append(name)
    return sorted(found, key=lambda n: (len(n), n))


def network_fit(state: dict) -> tuple[list[str], list[str], str]:
    """The networks a bare state dict fits exactly, as labels (``resnet34`` for the zoo, ``torchvision:NAME``,
    ``timm:NAME``), the likeliest first: searched in the zoo, then all of torchvision's classifiers, then the timm
    models whose first convolution and classifier the weights hold (their family first), within
    :data:`NETWORK_SEARCH_S` of this process's time; then the models named like the first found (``resnetaa50`` and
    ``resnetblur50`` beside ``resnet50``, ``tf_efficientnet_b0`` beside ``efficientnet_b0``, ``deit_small_*`` beside
    ``vit_small_*``), whose weights have the same shapes while they compute otherwise, so that the error names them
    all. With none found, the timm models whose stem and head the weights hold (they tell the family to try).

    Third, the prefix of the weights found ('' for all of them): where the whole fits nothing, each top-level part
    (``student.`` beside ``criterion.``) is searched on its own, since a second module's matrix saved after the
    network's classifier would otherwise be taken for it."""
    whole = shapes_of(strip_wrapper_prefixes(state))
    deadline = _clock() + NETWORK_SEARCH_S
    timm_like = timm_stem_and_head(whole)
    parts = _parts(whole)
    for in_timm in (False, True):  # timm's hundreds of models last: a part torchvision holds is found in seconds
        for prefix, shapes in parts:
            found = _fits_anywhere(shapes, timm_like, deadline, in_timm)
            if found:
                return found, [], prefix
    return [], timm_like, ""


def _parts(shapes: dict[str, tuple[int, ...]]) -> list[tuple[str, dict[str, tuple[int, ...]]]]:
    """(prefix, its weights without it): all of them first, then each top-level part that could be a whole network,
    the largest first: one that holds a quarter of the tensors at least, with a first convolution for images (four
    channels at most) and a classifier. A network's own parts are not searched: a Sequential of blocks (``layer1.``,
    ``features.``: keys that start with a number), a stem, a head, a stage whose first convolution takes more channels
    than an image has (``s1.``)."""
    groups: dict[str, dict[str, tuple[int, ...]]] = {}
    for key, shape in shapes.items():
        head, dot, rest = key.partition(".")
        if dot:
            groups.setdefault(f"{head}.", {})[rest] = shape

    def network_like(part: dict[str, tuple[int, ...]]) -> bool:
        weights = [shape for key, shape in part.items() if key.endswith("weight") and len(shape) >= 2]
        convs = [shape for shape in weights if len(shape) == 4]
        return (len(shapes) / 4 <= len(part) < len(shapes) and not any(key[0].isdigit() for key in part)
                and len(weights) >= 2
                and bool(convs) and convs[0][1] <= 4 and classes_and_channels(part)[0] is not None)

    parts = [(prefix, part) for prefix, part in groups.items() if network_like(part)]
    return [("", shapes), *sorted(parts, key=lambda part: -len(part[1]))]


def _fits_anywhere(shapes: dict[str, tuple[int, ...]], timm_like: list[str], deadline: float,
                   in_timm: bool) -> list[str]:
    """:func:`network_fit`'s search for one set of weights, in the zoo and torchvision or else in timm: the first fit
    found and its namesakes."""
    if classes_and_channels(shapes)[0] is None:
        return []
    import torchvision

    torchvision_names = torchvision.models.list_models(module=torchvision.models)
    if not in_timm:
        zoo = zoo_fit(shapes)
        if zoo is not None:
            return [zoo]
        first = next((f"torchvision:{n}" for n in _fits("torchvision", torchvision_names, shapes, deadline)),
                     None)
    else:
        ordered = _likest_families_first(timm_like, shapes, deadline)
        first = next((f"timm:{n}" for n in _fits("timm", ordered, shapes, deadline)), None)
    if first is None:
        return []
    size = _size_part(label_source(first)[1])
    found = [first]
    for source, names in (("torchvision", torchvision_names), ("timm", timm_like)):
        namesakes = [n for n in names if n.endswith(size) and f"{source}:{n}" not in found]
        found += [f"{source}:{n}" for n in _fits(source, namesakes, shapes, _clock() + SEARCH_S)]
    return found


def _size_part(name: str) -> str:
    """What a model's name says after its family: its size and variant (``50`` of resnet50, ``_b0`` of
    efficientnet_b0, ``_small_patch16_224`` of vit_small_patch16_224)."""
    return name[len(_family(name)):] or name


def _family(name: str) -> str:
    """A model name's family: its first word without the size (``resnet`` of resnet50d, ``mobilenetv3`` of
    mobilenetv3_large_100, ``vit`` of vit_small_patch16_224)."""
    token = name.split("_")[0]
    match = re.match(r"[a-z]+?(?:v\d+)?(?=\d|$)", token)
    return match.group() if match else token


def _key_pattern(keys) -> set[str]:
    return {re.sub(r"\d+", "#", k) for k in keys}


def _likest_families_first(names: list[str], shapes: dict[str, tuple[int, ...]], deadline: float) -> list[str]:
    """``names`` (timm models) ordered family by family, the family whose smallest member's key names (numbers left
    out) are likest the weights' first, each family's members shortest name first: the weights' own family is
    searched before hundreds of models that share their stem and head (172 timm models name theirs conv_stem and
    classifier)."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(_family(name), []).append(name)
    theirs = _key_pattern(shapes)
    likeness: dict[str, float] = {}
    for family, members in groups.items():
        if _clock() > deadline:
            break
        own = _built_shapes("timm", members[0], shapes)
        ours = _key_pattern(own or {})
        likeness[family] = len(ours & theirs) / len(ours | theirs) if ours else 0.0
    ordered = sorted(groups, key=lambda f: -likeness.get(f, -1.0))
    return [name for family in ordered for name in groups[family]]


def families(names: list[str], most: int = 4) -> str:
    """A few model names' families as globs (``vit_*, deit_*``), the most frequent first."""
    counts: dict[str, int] = {}
    for name in names:
        family = re.match(r"[a-z]+[0-9]*", name).group() if re.match(r"[a-z]", name) else name
        counts[family] = counts.get(family, 0) + 1
    ordered = sorted(counts, key=lambda f: -counts[f])
    return ", ".join(f"{f}*" for f in ordered[:most]) + (", ..." if len(ordered) > most else "")


def fit_change(label: str, state: dict, what: str, otherwise: str) -> str:
    """What to set when ``state`` does not fit the torchvision or timm network ``label`` names: the model of its
    family the weights fit, in its source, else in the other one (timm's resnet18 given to teacher=torchvision),
    else ``otherwise``."""
    source, name = label_source(label)
    if source not in SOURCES:
        return otherwise
    for other in (source, *(s for s in SOURCES if s != source)):
        found = family_fit(other, name, state)
        if found is not None:
            how = f"{what}.name={found}" if other == source else label_overrides(f"{other}:{found}", what)
            return f"the weights are {other}'s {found}: set {how}"
    return otherwise


def saved_network(state: dict, what: str, checkpoint, verb: str) -> str:
    """What to set for weights that do not say which network they belong to (a bare state dict), as the end of an
    error's sentence: the network they fit (:func:`network_fit`: the zoo, torchvision, timm; about ten seconds of
    this process's time at most, on this error only) with the overrides that ``verb`` (load, fine-tune) them into it,
    and the others whose weights have the same shapes; else the timm families their stem and head are named after;
    else the user's own class."""
    shapes = shapes_of(strip_wrapper_prefixes(state))
    found, timm_like, prefix = network_fit(state)
    part = {k[len(prefix):]: v for k, v in shapes.items() if k.startswith(prefix)}
    classes = classes_and_channels(part)[0]
    own_class = (f"{what}=module {what}.model._target_=my_pkg.MyNet {what}.checkpoint={checkpoint} for your own "
                 "class (docs/custom_teacher.md)")
    if found:
        source, name = label_source(found[0])
        others = len(shapes) - len(part)
        they = (f"those under {prefix!r} (beside {others} other tensor{'s' if others > 1 else ''})" if prefix
                else "they")
        key = f" {what}.state_key={prefix}" if prefix else ""
        if source not in SOURCES:
            return (f"{they} fit the zoo's {name} with {classes} classes: set {what}.arch={name}{key} "
                    f"{what}.num_classes={classes}.")
        said = (f"{they} fit {source}'s {name} with {classes} classes: {verb} them with "
                f"{label_overrides(found[0], what)}{key} {what}.checkpoint={checkpoint}.")
        if len(found) > 1:
            by_source: dict[str, list[str]] = {}
            for label in found[1:]:
                by_source.setdefault(label_source(label)[0], []).append(label_source(label)[1])
            others = "; ".join(f"{source}'s {', '.join(names)}" for source, names in by_source.items())
            choose = next(iter(by_source)) if len(by_source) == 1 else "SOURCE"
            said += (f" Their shapes are also those of {others}, which may compute otherwise (padding, anti-aliasing, "
                     f"input scaling): if they were trained as one of those, {verb} them with {what}={choose} "
                     f"{what}.name=NAME instead.")
        return said
    sized = (f" A network made for one input size (their pos_embed) is compared at its default size: if they were "
             f"trained at another, name it with {what}=timm {what}.name=NAME {what}.input_size=[C,H,W]."
             if any(k.endswith("pos_embed") for k in shapes) else "")
    if classes is None:
        return (f"they hold no classifier (a last matrix or 1x1 convolution) to build a network for: {verb} them "
                f"with {own_class}.")
    if timm_like:
        return (f"no zoo or torchvision network fits them, nor a timm model within the {NETWORK_SEARCH_S:.0f} s "
                f"searched. Their first convolution and classifier are named "
                f"as in {len(timm_like)} timm models ({families(timm_like)}): {verb} them with {what}=timm "
                f"{what}.name=NAME {what}.checkpoint={checkpoint}, or with {own_class}.{sized}")
    return (f"no zoo, torchvision or timm network fits them: {verb} them "
            f"with {own_class}, or set {what}.arch to the zoo network they were saved from.{sized}")
