"""What a report measures from a network or from its logits: size, MACs, peak tensor memory, calibration,
per-class accuracy and the similarity of two networks' features. Plain functions of tensors, no I/O."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode


def parameter_count(model: nn.Module) -> int:
    """Every parameter element (the normalisation wrapper has none of its own)."""
    return sum(p.numel() for p in model.parameters())


def weight_bytes(model: nn.Module) -> int:
    """Parameters and persistent buffers (BatchNorm statistics) as stored: what the weights take in memory."""
    return sum(t.numel() * t.element_size() for t in model.state_dict().values() if isinstance(t, torch.Tensor))


@torch.no_grad()
def multiply_accumulates(model: nn.Module, input_size: tuple[int, int, int]) -> int:
    """MACs of one image's forward pass, from ``torch.utils.flop_counter`` (it counts a multiply-add as two FLOPs
    in convolutions and matrix products, the layers that dominate; element-wise work is not counted)."""
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    image = torch.rand(1, *input_size, device=device)
    counter = FlopCounterMode(display=False)
    with counter:
        model(image)
    return int(counter.get_total_flops()) // 2


class _LiveTensorBytes(TorchDispatchMode):
    """Follows every storage that an operator creates while active and keeps the largest total alive at once.

    A storage is alive until PyTorch frees it (a weak reference to it expires), so in-place operators, views and
    the tensors freed as soon as the next layer has read them are counted as the allocator sees them.
    """

    def __init__(self):
        super().__init__()
        self.live: dict[int, tuple[StorageWeakRef, int]] = {}
        self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in torch.utils._pytree.tree_leaves(out):
            if isinstance(tensor, torch.Tensor) and tensor.device.type != "meta":
                storage = tensor.untyped_storage()
                key = storage._cdata
                if key not in self.live:
                    self.live[key] = (StorageWeakRef(storage), storage.nbytes())
        self.live = {k: (ref, size) for k, (ref, size) in self.live.items() if not ref.expired()}
        self.peak = max(self.peak, sum(size for _, size in self.live.values()))
        return out


@torch.no_grad()
def peak_activation_bytes(model: nn.Module, images: torch.Tensor) -> int:
    """The most bytes of tensors made during one forward pass on ``images`` that were alive at the same time
    (activations and workspace tensors; the weights and the input not included)."""
    tracker = _LiveTensorBytes()
    with tracker:
        model(images)
    return tracker.peak


@dataclass
class Calibration:
    """Expected calibration error (top-label, equal-width confidence bins) and the bins it comes from."""

    ece: float
    bins: list[dict]  # per bin: lower, upper, count, confidence (mean), accuracy


def calibration(logits: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> Calibration:
    """ECE = sum over bins of (bin count / n) x |accuracy - mean confidence| (Guo et al. 2017), with the bins."""
    probs = logits.float().softmax(1)
    confidence, predicted = probs.max(1)
    correct = (predicted == labels).float()
    edges = torch.linspace(0, 1, bins + 1)
    # Bin b holds confidences in (edges[b], edges[b+1]]; a confidence of exactly 0 cannot occur after softmax.
    index = torch.bucketize(confidence, edges[1:-1], right=False).clamp_(0, bins - 1)
    table, ece, n = [], 0.0, max(1, labels.numel())
    for b in range(bins):
        inside = index == b
        count = int(inside.sum())
        mean_conf = float(confidence[inside].mean()) if count else None
        accuracy = float(correct[inside].mean()) if count else None
        if count:
            ece += count / n * abs(accuracy - mean_conf)
        table.append({"lower": float(edges[b]), "upper": float(edges[b + 1]), "count": count,
                      "confidence": mean_conf, "accuracy": accuracy})
    return Calibration(ece=min(1.0, ece), bins=table)


def per_class_accuracy(predicted: torch.Tensor, labels: torch.Tensor, num_classes: int) -> list[float | None]:
    """Top-1 accuracy within each true class (None for a class without test images)."""
    totals = torch.bincount(labels, minlength=num_classes)
    hits = torch.bincount(labels[predicted == labels], minlength=num_classes)
    return [None if int(t) == 0 else float(h) / float(t) for h, t in zip(hits, totals)]


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear centred kernel alignment of two feature matrices of the same images (n x d1, n x d2), in [0, 1]:
    1 when one is a rotation and scaling of the other (Kornblith et al. 2019). Computed in float64 in the
    feature dimensions (d x d products), so n may be large."""
    x = x.double().flatten(1)
    y = y.double().flatten(1)
    x = x - x.mean(0, keepdim=True)
    y = y - y.mean(0, keepdim=True)
    cross = (y.T @ x).square().sum()
    norm = torch.linalg.matrix_norm(x.T @ x) * torch.linalg.matrix_norm(y.T @ y)
    return float(cross / norm) if float(norm) > 0 else float("nan")
