"""Building the objects a recipe describes (``_target_`` nodes), with errors a user can act on.

hydra wraps whatever a constructor raises in an ``InstantiationException`` whose
text asks for ``HYDRA_FULL_ERROR=1``. A constructor that refuses a value (a
``ValueError``, e.g. a negative temperature or kornia's check of a brightness)
or an argument (a ``TypeError``, e.g. a misspelt key) is refusing the recipe,
so it becomes a :class:`DatafreeError` naming the recipe key, which the CLI
reports in one line before any work. Other exceptions are bugs and pass through.
"""
from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from datafree.errors import DatafreeError


def instantiate_node(node: Any, key: str, **kwargs) -> Any:
    """``hydra.utils.instantiate(node, **kwargs)``; ``key`` names the node in the recipe (e.g. ``trainer``)."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(node, **kwargs)
    except InstantiationException as error:
        raise recipe_error(error, node, key) from None


def recipe_error(error: BaseException, node: Any, key: str) -> BaseException:
    """The user-facing error for a failed instantiation, or ``error`` itself when it is a bug."""
    cause = error.__cause__
    if isinstance(cause, DatafreeError):
        return cause
    where = _full_key(str(error), node) or key
    target = _target(str(error))
    missing = _missing_package(error)
    if missing in PUBLISHED:
        return DatafreeError(f"{where}._target_={target!r} needs {missing}, which is not installed: {PUBLISHED[missing]}.")
    if isinstance(cause, ImportError) or "Error locating target" in str(error):
        return DatafreeError(
            f"{where}._target_={target!r} cannot be imported: check the spelling, and put the folder that holds "
            "its package on the Python path (e.g. run 'PYTHONPATH=. datafree ...' from that folder)."
        )
    if isinstance(cause, (ValueError, TypeError)):
        reason = str(cause).strip().splitlines()[0][:300] if str(cause).strip() else type(cause).__name__
        return DatafreeError(
            f"{where} ({target}) refused its settings: {type(cause).__name__}: {reason}. Fix the values under {where} "
            "('datafree <command> --cfg job' prints them)."
        )
    return error


# Packages a recipe may name that are published but not among datafree's requirements: how to install each.
PUBLISHED = {"transformers": "pip install transformers", "timm": 'pip install timm (the [timm] extra: pip install -e ".[timm]" in the datafree checkout)'}


def _missing_package(error: BaseException) -> str | None:
    """The top-level package whose absence made ``error`` (a ModuleNotFoundError in its chain), or None."""
    seen = error
    while seen is not None:
        if isinstance(seen, ModuleNotFoundError) and seen.name:
            return seen.name.split(".")[0]
        seen = seen.__cause__ or seen.__context__
    return None


def _target(message: str) -> str:
    found = re.search(r"target '([^']+)'", message)
    return found.group(1) if found else "?"


def _full_key(message: str, node: Any) -> str | None:
    """hydra's ``full_key`` of the failing node; list items come as ``augment0``, written here ``augment[0]``."""
    found = re.search(r"full_key: (\S+)", message)
    if not found:
        return None
    key = found.group(1)
    item = re.fullmatch(r"(.+?)(\d+)", key)
    if item and OmegaConf.is_config(node):
        parent = OmegaConf.select(node._get_root(), item.group(1), default=None)
        if OmegaConf.is_list(parent):
            return f"{item.group(1)}[{item.group(2)}]"
    return key


def recipes_location() -> str:
    """Where hydra reads the recipes: in a source checkout (editable install, or ``python -m datafree``
    from the repository without installing) the top-level ``recipes/`` folder beside the package; in a
    regular install the package ``datafree.recipes`` that the wheel built from that folder."""
    folder = Path(__file__).resolve().parents[1] / "recipes"
    return str(folder) if (folder / "distill.yaml").is_file() else "pkg://datafree.recipes"


def _recipes_folder() -> Path:
    location = recipes_location()
    if not location.startswith("pkg://"):
        return Path(location)
    import datafree.recipes

    return Path(datafree.recipes.__file__).parent


@functools.lru_cache(maxsize=None)
def recipe_defaults(name: str) -> dict:
    """The values of the recipe ``name`` (e.g. ``"trainer/default"``) as a plain dict, without ``_target_`` and
    ``_partial_``: what the Python API takes where a caller leaves a setting out, so that the recipe is the one
    place that holds each default. Its defaults list is followed for the forms recipes use for their own group
    (``sibling``, ``group: option``, ``group@_here_: option``); nodes with a ``_target_`` stay nodes."""
    values = _compose_file(_recipes_folder(), name)
    return {k: v for k, v in values.items() if k not in ("_target_", "_partial_")}


def _compose_file(root: Path, name: str) -> dict:
    node = OmegaConf.to_container(OmegaConf.load(root / f"{name}.yaml"))
    group = str(Path(name).parent)
    merged = OmegaConf.create()
    own = {k: v for k, v in node.items() if k != "defaults"}
    entries = node.get("defaults") or ["_self_"]
    for entry in entries:
        if entry == "_self_":
            merged = OmegaConf.merge(merged, own)
        elif isinstance(entry, str):  # a sibling in the same group, e.g. "default"
            merged = OmegaConf.merge(merged, _compose_file(root, f"{group}/{entry}"))
        else:
            (key, option), = entry.items()
            key = key.removeprefix("override ")
            sub, _, package = key.partition("@")
            values = _compose_file(root, f"{group}/{sub}/{option}")
            merged = OmegaConf.merge(merged, values if package == "_here_" else {sub: values})
    if "_self_" not in entries:
        merged = OmegaConf.merge(merged, own)
    return OmegaConf.to_container(merged)
