"""Uniform random noise: the baseline every synthesizer must beat."""
from __future__ import annotations

import torch

from datafree.errors import DatafreeError
from datafree.synthesizers.base import Batch, Synthesizer


class NoiseSynthesizer(Synthesizer):
    """Each round, ``batch_size`` images of i.i.d. uniform pixels (the student step asks the teacher for their labels)."""

    def __init__(self, batch_size: int = 256):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise DatafreeError(f"the noise synthesizer's batch_size must be an int >= 1, got {batch_size!r}.")
        self.batch_size = batch_size

    @torch.no_grad()
    def synthesize(self) -> Batch:
        return Batch(images=self.sample(self.batch_size))

    def sample(self, n: int) -> torch.Tensor:
        return torch.rand(n, *self.input_size, device=self.device)
