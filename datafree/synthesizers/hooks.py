"""Forward hooks that only live inside a ``with`` block, also when it raises."""
from __future__ import annotations

import torch
from torch import nn

from datafree.errors import DatafreeError


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


class BatchNormStatistics:
    """Measures how far the batch statistics at each BatchNorm input are from its running statistics.

    Inside the ``with`` block every forward pass of ``model`` records, per BN
    layer, ``||mean_batch - running_mean||_2 + ||var_batch - running_var||_2``
    (DeepInversion's feature-distribution regulariser). :meth:`loss` sums
    them, with ``first_multiplier`` on the first layer.
    """

    def __init__(self, model: nn.Module, first_multiplier: float = 1.0):
        self.layers = batchnorm_layers(model)
        if not self.layers:
            raise DatafreeError(
                f"the teacher ({type(model).__name__}) has no BatchNorm layer, so its statistics cannot be "
                "matched: choose a synthesizer without the BN prior (e.g. synthesizer=dfad, or set its bn weight to 0) "
                "or use a teacher with BatchNorm."
            )
        self.first_multiplier = float(first_multiplier)
        self._handles: list = []
        self._losses: list[torch.Tensor | None] = [None] * len(self.layers)

    def _hook(self, index: int):
        def record(module, inputs, output):
            x = inputs[0].float()
            dims = [0] + list(range(2, x.dim()))
            mean = x.mean(dim=dims)
            var = x.var(dim=dims, unbiased=False)
            self._losses[index] = torch.linalg.vector_norm(mean - module.running_mean, 2) + torch.linalg.vector_norm(
                var - module.running_var, 2
            )

        return record

    def __enter__(self) -> "BatchNormStatistics":
        self._handles = [layer.register_forward_hook(self._hook(i)) for i, layer in enumerate(self.layers)]
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._losses = [None] * len(self.layers)

    def loss(self) -> torch.Tensor:
        recorded = [l for l in self._losses if l is not None]
        if not recorded:
            raise RuntimeError("BatchNormStatistics.loss() called before a forward pass inside the with block")
        total = self.first_multiplier * recorded[0]
        for value in recorded[1:]:
            total = total + value
        return total


class FeatureCapture:
    """Keeps the outputs of named sub-modules during forward passes inside the ``with`` block."""

    def __init__(self, model: nn.Module, names: list[str]):
        modules = dict(model.named_modules())
        missing = [n for n in names if n not in modules]
        if missing:
            raise DatafreeError(
                f"layer(s) {missing} not found in {type(model).__name__}: choose names from its named_modules(), "
                f"e.g. {[n for n in modules if n][:8]}."
            )
        self.modules = [modules[n] for n in names]
        self.features: list[torch.Tensor | None] = [None] * len(names)
        self._handles: list = []

    def __enter__(self) -> "FeatureCapture":
        def make(i):
            def record(module, inputs, output):
                self.features[i] = output

            return record

        self._handles = [m.register_forward_hook(make(i)) for i, m in enumerate(self.modules)]
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
