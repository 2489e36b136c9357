"""Weights as users actually save them: nested dicts, DataParallel prefixes, a Lightning module's prefix,
partial matches.

Everything here raises one :class:`DatafreeError` that lists the first few
offending keys, before ``load_state_dict`` would print a page of them.
"""
from __future__ import annotations

import logging
from typing import Callable

import torch
from torch import nn

from datafree.errors import DatafreeError
from datafree.models.sources import AUXILIARY_HEADS, label_overrides, label_source
from datafree.teachers.checkpoint import saved_label

log = logging.getLogger("datafree")

# Where training scripts commonly nest the weights, tried in this order when no key is named.
NESTED_KEYS = ("state_dict", "model_state_dict", "model", "net", "network", "weights", "params", "module")
# Added by nn.DataParallel / DistributedDataParallel and by torch.compile.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_SHOWN = 5  # keys listed in an error message


def is_state_dict(blob) -> bool:
    return isinstance(blob, dict) and bool(blob) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in blob.items()
    )


def _state_key(where: str) -> str:
    """The recipe key that chooses the weights in the file ``where`` names (``student.checkpoint '...'``)."""
    return where.split(" ")[0].replace(".checkpoint", ".state_key") if ".checkpoint" in where else "teacher.state_key"


def extract_state_dict(blob, where: str, state_key: str | None = None) -> dict[str, torch.Tensor]:
    """The tensors of ``blob``: itself, ``blob[state_key]``, or the first of :data:`NESTED_KEYS` that holds them; a
    ``state_key`` ending in a dot is a prefix (``student.``): the tensors under it, without it."""
    if isinstance(blob, nn.Module):  # a pickled module, loaded only with trust_checkpoint=true
        return blob.state_dict()
    if state_key and state_key.endswith("."):  # a prefix: the weights under it, in the state dict found as usual
        state = extract_state_dict(blob, where)
        kept = {k[len(state_key):]: v for k, v in state.items() if k.startswith(state_key)}
        if not kept:
            heads = sorted({k.split(".")[0] + "." for k in state})[:_SHOWN]
            raise DatafreeError(f"{where} holds no weights under {state_key!r} (its keys start with {', '.join(heads)}): "
                                f"set {_state_key(where)} to one of those prefixes, or null.")
        return kept
    if state_key:
        if not isinstance(blob, dict) or state_key not in blob:
            keys = list(blob)[:_SHOWN] if isinstance(blob, dict) else []
            raise DatafreeError(
                f"{where} has no key {state_key!r} (top-level keys: {keys}): set {_state_key(where)} to the one "
                "holding the weights, or null to find it automatically."
            )
        blob = blob[state_key]
        if isinstance(blob, nn.Module):
            return blob.state_dict()
    if is_state_dict(blob):
        return strip_wrapper_prefixes(blob)
    if isinstance(blob, dict):
        for key in NESTED_KEYS:
            if is_state_dict(blob.get(key)):
                averaged = [k for k in blob if "ema" in str(k).lower().split("_") and is_state_dict(blob[k])]
                if averaged and not state_key:  # timm's train.py keeps its running average beside the weights
                    log.info(f"{where}: the weights under {key!r} are used; it also holds {averaged[0]!r}, a running "
                             f"average of them, often the better network: {_state_key(where)}={averaged[0]} takes it")
                return strip_wrapper_prefixes(blob[key])
        tensors = {k: v for k, v in blob.items() if isinstance(v, torch.Tensor)}
        others = [k for k, v in blob.items() if not isinstance(v, torch.Tensor)]
        if len(tensors) > len(others) and not any(isinstance(blob[k], dict) for k in others):
            # torch.save({**model.state_dict(), "epoch": 3}): the weights with a few notes beside them
            log.info(f"{where}: {len(others)} entries beside the weights are not tensors and are left out "
                     f"({', '.join(map(str, others[:_SHOWN]))})")
            return strip_wrapper_prefixes(tensors)
    keys = list(blob)[:8] if isinstance(blob, dict) else type(blob).__name__
    raise DatafreeError(
        f"{where} holds no state dict of tensors (found {keys}): save model.state_dict(), or set {_state_key(where)} "
        "to the key that holds it."
    )


def strip_wrapper_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop a ``module.`` (DataParallel) or ``_orig_mod.`` (torch.compile) prefix carried by every key."""
    for prefix in WRAPPER_PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def prefix_holding(state: dict[str, torch.Tensor], own_keys, where: str) -> str:
    """The prefix under which ``state`` holds every one of ``own_keys`` (a network's ``state_dict()`` keys), when
    they are not there bare: a Lightning module's ``model.``, a wrapper's ``net.``, a distillation checkpoint's
    ``student.``. '' when the keys are there as they are or under no single prefix (the key check then says what
    differs); two prefixes that both hold them are one error naming each, since either could be meant."""
    own = list(own_keys)
    if not own or own[0] in state:
        return ""
    anchor = own[0]  # every prefix that can hold all of them holds this key
    candidates = [k[: -len(anchor)] for k in state if k.endswith("." + anchor)]
    found = [p for p in candidates if all(p + k in state for k in own)]
    if len(found) > 1:
        raise DatafreeError(
            f"{where} holds this network {len(found)} times, under {', '.join(repr(p) for p in found[:_SHOWN])}: "
            f"choose one with {_state_key(where)}={found[0]} (the prefix, with its dot)."
        )
    return found[0] if found else ""


def under_prefix(state: dict[str, torch.Tensor], net: nn.Module, where: str) -> dict[str, torch.Tensor]:
    """``state`` as ``net``'s keys, when every one of them is in it under one prefix (:func:`prefix_holding`);
    what was dropped is logged. Otherwise ``state`` unchanged."""
    own = net.state_dict()
    prefix = prefix_holding(state, own.keys(), where)
    if not prefix:
        return state
    kept = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    others = len(state) - len(kept)
    if not any(t.is_meta for t in own.values()):  # a meta-device network is only a check of the fit: said once
        log.info(f"{where}: the network's weights are those under {prefix!r} (as a Lightning module or a wrapper "
                 f"saves them){f'; {others} other tensors are left out' if others else ''}")
    return kept


def without_auxiliary_heads(state: dict[str, torch.Tensor], net: nn.Module, where: str) -> dict[str, torch.Tensor]:
    """``state`` without the auxiliary classifiers of a GoogLeNet or Inception-v3 (``aux1.``, ``AuxLogits.``, ...)
    when ``net`` was built without them (as datafree builds torchvision's: models/sources.py); what was left out is
    logged."""
    own = net.state_dict()
    prefixes = [p for heads in AUXILIARY_HEADS.values() for p in heads
                if any(k.startswith(p) for k in state) and not any(k.startswith(p) for k in own)]
    if not prefixes:
        return state
    kept = {k: v for k, v in state.items() if not k.startswith(tuple(prefixes))}
    log.info(f"{where}: the weights of its auxiliary classifiers ({', '.join(p + '*' for p in prefixes)}: "
             f"{len(state) - len(kept)} tensors) are left out: datafree trains and distils the main classifier only")
    return kept


def mismatch_fix(blob, what: str, built: str, change: str | None, restart: str | None = None,
                 load: str | None = None) -> str | None:
    """What to change when the weights in ``blob`` do not fit the network this run builds for ``what`` (``student``
    or ``teacher``; ``built``: its label). Said as the network this run builds, so that it is not read as the file's;
    then ``change`` where the file does not say what it holds (None: nothing is said, the caller has its own
    advice), else the overrides that build the network a datafree checkpoint names. ``load``: the file's path, where a
    teacher is loaded rather than trained: ``teacher=checkpoint`` builds the network it names with the input size
    and normalisation it records. ``restart``: the way out without these weights, if there is one."""
    saved = saved_label(blob)
    tail = f", or {restart}." if restart else "."
    if saved is None or saved == built:
        return None if change is None else f"This run builds the {what} {built}: {change}{tail}"
    if not load:
        how = f"{label_overrides(saved, what)} builds that"
    elif label_source(saved)[0] == "module":  # only the user's class builds it
        how = f"{label_overrides(saved, what)} {what}.checkpoint={load} builds that"
    else:  # teacher=checkpoint also takes the input size and normalisation the file records
        how = (f"teacher=checkpoint teacher.checkpoint={load} builds that (it reads the network from the file: leave "
               "teacher.arch out)")
    return f"This run builds the {what} {built}, and the file is a datafree checkpoint of {saved}: {how}{tail}"


def only_its_class(label: str, checkpoint, doing: str) -> DatafreeError:
    """The refusal of a datafree checkpoint of the user's own class (``label``, e.g. a student built with
    student=module), which no label can build: ``doing`` (load, fine-tune) it with the overrides of that class."""
    return DatafreeError(f"{str(checkpoint)!r} holds a {label} network, which only its own class can build: {doing} it "
                         f"with {label_overrides(label, 'teacher')} teacher.checkpoint={checkpoint}.")


def load_weights(net: nn.Module, state: dict[str, torch.Tensor], where: str, model: str,
                 fix: str | Callable[[], str]) -> None:
    """``net.load_state_dict(state)`` after checking keys and shapes.

    The error reads "``where`` does not match ``model``: <what differs>. ``fix``" (a callable: asked only then).
    """
    state = without_auxiliary_heads(under_prefix(strip_wrapper_prefixes(state), net, where), net, where)
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [
        f"{k}: {tuple(state[k].shape)} in the file vs {tuple(v.shape)} in the model"
        for k, v in own.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or mismatched:
        details = []
        if missing:
            details.append(f"{len(missing)} missing keys ({', '.join(missing[:_SHOWN])}{', ...' if len(missing) > _SHOWN else ''})")
        if unexpected:
            details.append(
                f"{len(unexpected)} unexpected keys ({', '.join(unexpected[:_SHOWN])}{', ...' if len(unexpected) > _SHOWN else ''})"
            )
        if mismatched:
            details.append(f"{len(mismatched)} shape mismatches ({'; '.join(mismatched[:3])})")
        raise DatafreeError(f"{where} does not match {model}: {'; '.join(details)}. {fix() if callable(fix) else fix}")
    if any(t.is_meta for t in own.values()):
        return  # a network on the meta device (shapes only): the check was the point
    net.load_state_dict(state)


def load_start_weights(net: nn.Module, state: dict[str, torch.Tensor], where: str, model: str,
                       fix: str | Callable[[], str],
                       channels_fix: Callable[[int], str]) -> list[str]:
    """Weights to start training from (e.g. ImageNet weights for a network with another head): like
    :func:`load_weights`, except that a classifier head of another class count starts fresh and a first
    convolution is adapted between grey and colour (:func:`_grey_or_colour`). Returns one note for each of those;
    any other difference is refused, a first convolution of any other channel count with
    ``channels_fix(the file's channels)`` saying what else may be changed."""
    state, own, notes = dict(under_prefix(strip_wrapper_prefixes(state), net, where)), net.state_dict(), []
    linears = [name for name, m in net.named_modules() if isinstance(m, nn.Linear)]
    head = [k for k in (f"{linears[-1]}.weight", f"{linears[-1]}.bias") if linears and k in state and k in own
            and state[k].shape != own[k].shape]
    if head:
        notes.append(f"{where}: its classifier ({', '.join(head)}) is for {state[head[0]].shape[0]} classes; it starts "
                     f"fresh for {own[head[0]].shape[0]}")
        state.update({k: own[k] for k in head})
    convs = [name for name, m in net.named_modules() if isinstance(m, nn.Conv2d)]
    first = f"{convs[0]}.weight" if convs else None
    if first in state and first in own and state[first].dim() == 4 and state[first].shape[1] != own[first].shape[1] \
            and state[first].shape[0] == own[first].shape[0] and state[first].shape[2:] == own[first].shape[2:]:
        state[first], note = _grey_or_colour(state[first], int(own[first].shape[1]), f"{where}: its first "
                                             f"convolution ({first})", channels_fix)
        notes.append(note)
    load_weights(net, state, where, model, fix)
    return notes


def _grey_or_colour(weight: torch.Tensor, channels: int, what: str,
                    channels_fix: Callable[[int], str]) -> tuple[torch.Tensor, str]:
    """(``weight``, a first convolution's, for ``channels`` input channels, a note saying how), where that keeps its
    meaning: weights for grey repeated for N channels and divided by N answer a grey image given as N equal channels
    as before; weights for N channels summed answer a grey image as the N-channel network answered it in N equal
    channels. Between other counts (RGBA and RGB, say) no channel of one stands for a channel of the other: refused."""
    have = int(weight.shape[1])
    if channels == 1:
        return weight.sum(1, keepdim=True), f"{what} takes {have} channels; summed into the network's 1 (grey)"
    if have == 1:
        return (weight.repeat(1, channels, 1, 1) / channels,
                f"{what} takes 1 channel (grey); repeated for the network's {channels} and divided by {channels}")
    raise DatafreeError(f"{what} takes {have} channels and this network {channels}: only grey weights (1 channel) are "
                        f"adapted to more channels, and weights of any count to grey. Start from weights saved for "
                        f"{channels} channels or 1, {channels_fix(have)}.")
