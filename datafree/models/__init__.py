"""Model zoo: CIFAR-style classifiers and image generators, all created by name."""
from __future__ import annotations

import inspect
import numbers

from torch import nn

from datafree.errors import DatafreeError
from datafree.registry import MODELS

# Imported for their side effect: each module registers its factories in MODELS.
from datafree.models import generators, mobilenetv2, resnet, tiny, vgg, wrn  # noqa: F401
from datafree.models.generators import Generator

__all__ = ["create_model", "list_models", "Generator", "MODELS"]


def create_model(name: str, num_classes: int = 10, **kwargs) -> nn.Module:
    """Build a registered model; bad names and arguments fail with a DatafreeError saying what to change."""
    if not isinstance(num_classes, numbers.Integral) or isinstance(num_classes, bool) or num_classes < 1:
        raise DatafreeError(f"num_classes must be a positive integer (e.g. 10 for CIFAR-10); got {num_classes!r}.")
    factory = MODELS.get(name)
    try:
        inspect.signature(factory).bind(num_classes=num_classes, **kwargs)
    except TypeError:
        accepted = [p for p in inspect.signature(factory).parameters if p != "num_classes"]
        unknown = sorted(set(kwargs) - set(accepted))
        raise DatafreeError(
            f"model {name!r} does not take argument(s) {', '.join(unknown)}; "
            f"it accepts: num_classes, {', '.join(accepted)}."
        ) from None
    return factory(num_classes=int(num_classes), **kwargs)


def list_models() -> list[str]:
    """The names ``create_model`` accepts, sorted."""
    return MODELS.names()
