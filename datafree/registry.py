"""One small name -> factory registry (MODELS: the zoo and the generators)."""
from __future__ import annotations

import difflib
from typing import Callable, Iterator

from datafree.errors import DatafreeError


class Registry:
    """Maps names to factories; unknown names fail with the list of known ones."""

    def __init__(self, kind: str):
        self.kind = kind
        self._factories: dict[str, Callable] = {}

    def register(self, name: str | None = None) -> Callable[[Callable], Callable]:
        def decorator(factory: Callable) -> Callable:
            key = name or factory.__name__
            if key in self._factories:
                raise ValueError(f"{self.kind} {key!r} is registered twice")
            self._factories[key] = factory
            return factory

        return decorator

    def get(self, name: str) -> Callable:
        try:
            return self._factories[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._factories, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise DatafreeError(
                f"unknown {self.kind} {name!r}.{hint} Choose one of: {', '.join(self.names())}."
            ) from None

    def create(self, name: str, *args, **kwargs):
        return self.get(name)(*args, **kwargs)

    def names(self) -> list[str]:
        return sorted(self._factories)

    def __contains__(self, name: str) -> bool:
        return name in self._factories

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._factories)


MODELS = Registry("model")
register_model = MODELS.register
