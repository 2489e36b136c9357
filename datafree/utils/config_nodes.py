"""Recipe nodes as any module reads them, before the values are used.

Low in the package on purpose: the top-level recipe check (:mod:`datafree.config_checks`)
and the teacher loader (a recipe's ``teacher`` node, an ensemble's members) both use it.
"""
from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from datafree.errors import DatafreeError


def check_no_unset(node: DictConfig, prefix: str = "") -> None:
    """Refuse values a recipe leaves as ``???`` (e.g. teacher=module's model and checkpoint), naming them all."""
    missing = sorted(k if k.startswith(prefix) else prefix + k for k in OmegaConf.missing_keys(node))
    if missing:
        example = {"_target_": "my_package.MyNet", "members": "[{...}, {...}]"}.get(missing[0].rsplit(".", 1)[-1], "PATH")
        raise DatafreeError(f"{', '.join(missing)} must be set (the recipe leaves {'it' if len(missing) == 1 else 'them'} "
                            f"as ???): e.g. {missing[0]}={example}.")
