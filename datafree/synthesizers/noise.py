"""Uniform random noise: the baseline every synthesizer must beat."""
from __future__ import annotations

import torch

from datafree.synthesizers.base import Batch, Synthesizer


class NoiseSynthesizer(Synthesizer):
    """Each round, ``batch_size`` images of i.i.d. uniform pixels (the student step asks the teacher for their labels)."""

    def __init__(self, batch_size: int = 256):
        self.batch_size = int(batch_size)

    @torch.no_grad()
    def synthesize(self) -> Batch:
        return Batch(images=self.sample(self.batch_size))

    def sample(self, n: int) -> torch.Tensor:
        return torch.rand(n, *self.input_size, device=self.device)
