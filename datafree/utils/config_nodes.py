"""Recipe nodes as any module reads them, before the values are used.

Low in the package on purpose: the top-level recipe check (:mod:`datafree.config_checks`)
and the teacher loader (a recipe's ``teacher`` node, an ensemble's members) both use it.
"""
from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from datafree.errors import DatafreeError


def _missing_keys(value, path: str = "") -> list[str]:
    """The dotted keys left as ``???``, read without resolving an interpolation: OmegaConf.missing_keys resolves
    them and fails with a traceback on one that points at a missing value (data.train.root: ${data.root})."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return [path] if value == "???" else []
    return [key for name, child in items for key in _missing_keys(child, f"{path}.{name}" if path else str(name))]


def check_no_unset(node: DictConfig, prefix: str = "", examples: dict[str, str] | None = None) -> None:
    """Refuse values a recipe leaves as ``???`` (e.g. teacher=module's model and checkpoint), naming them all;
    ``examples`` gives a value to show per key (config_checks' rules), else one by the key's last name."""
    missing = sorted(k if k.startswith(prefix) else prefix + k for k in _missing_keys(
        OmegaConf.to_container(node, resolve=False)))
    if missing:
        example = (examples or {}).get(missing[0]) or {"_target_": "my_package.MyNet", "members": "[{...}, {...}]"}.get(
            missing[0].rsplit(".", 1)[-1], "PATH")
        raise DatafreeError(f"{', '.join(missing)} must be set (the recipe leaves {'it' if len(missing) == 1 else 'them'} "
                            f"as ???): e.g. {missing[0]}={example}.")
