"""The modules a loaded teacher becomes: normalisation wrapper, ensemble, frozen state."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from datafree.errors import DatafreeError
from datafree.teachers.hugging_face import read_field


class Normalized(nn.Module):
    """Applies per-channel (x - mean) / std, then the wrapped network.

    Images everywhere in datafree are in [0, 1]; this wrapper is the only place
    that knows a network's normalisation, so synthesizers never need it.

    ``from_probabilities``: the network ends in a softmax (rows of probabilities); the wrapper returns their
    logarithms, which are its logits less one constant per image, so every softmax of them, at any temperature, is
    the same. Distilling the probabilities themselves as logits would soften every target to near uniform.

    ``logits_field``: the network returns its logits inside an output object (``"logits"`` of a Hugging Face
    transformers ModelOutput, or of a dict); the wrapper returns that field, so everything after it (losses,
    CUDA graphs, DDP, ONNX export) sees a tensor.
    """

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float], from_probabilities: bool = False,
                 logits_field: str | None = None):
        super().__init__()
        self.model = model
        self.from_probabilities = bool(from_probabilities)
        self.logits_field = logits_field
        # Not persistent: the state dict stays the bare network's, as users expect.
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        output = self.model((images - self.mean) / self.std)
        if self.logits_field is not None:
            output = read_field(output, self.logits_field)
        if self.from_probabilities:  # float32: bf16's probabilities are coarse, their logarithm need not be
            return output.float().clamp_min(torch.finfo(torch.float32).tiny).log()
        return output


def are_probabilities(output: torch.Tensor) -> bool:
    """Rows in [0, 1] that sum to 1: a network that ends in a softmax (logits are neither, on random images)."""
    return output.dim() == 2 and output.shape[1] > 1 and bool(
        (output >= 0).all() and (output <= 1).all() and torch.allclose(output.sum(1), torch.ones(()), atol=1e-3))


class Ensemble(nn.Module):
    """Several teachers as one: the mean of their logits.

    Each member keeps its own normalisation (members are :class:`Normalized`).
    BatchNorm-statistics losses see every member's BN layers, so the loss is
    summed over members; ``members`` lets them find where each member starts.
    """

    def __init__(self, members: Sequence[nn.Module]):
        super().__init__()
        if len(members) < 2:
            raise DatafreeError(f"an ensemble teacher needs at least 2 members, got {len(members)}: list them under teacher.members.")
        self.members = nn.ModuleList(members)
        first = members[0]
        # The first member's normalisation stands for the ensemble where one is needed (the L2 prior's centre).
        if isinstance(first, Normalized):
            self.register_buffer("mean", first.mean.clone(), persistent=False)
            self.register_buffer("std", first.std.clone(), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        total = None
        for member in self.members:
            logits = member(images).float()
            total = logits if total is None else total + logits
        return total / len(self.members)


def network_of(model: nn.Module) -> nn.Module:
    """The user's network inside a :class:`Normalized` wrapper (names in recipes refer to it)."""
    return model.model if isinstance(model, Normalized) else model


def freeze(model: nn.Module) -> nn.Module:
    """Eval mode, no parameter gradients: the teacher is never trained during distillation."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
