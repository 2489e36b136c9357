"""Accuracy on a real held-out set, and teacher-student agreement, in one pass; with them what a
collapsed model looks like: the share of images given its most frequent class, and of images whose
logits are not finite (an argmax over NaN logits names one class for every image: chance, not a measure).

Under torchrun each rank evaluates its share of the test set (``DeviceBatches`` with a
``shard``) and the counts are summed over the ranks, so every rank gets the same result.
"""
from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import nn

from datafree.errors import DatafreeError
from datafree.utils import dist
from datafree.utils.device import autocast

# A model that gives one class to this share of the test images (or more) has collapsed: its accuracy is that
# class's share of the test set, whatever it learned. 0.9, not 1: a model caught while collapsing.
COLLAPSED_SHARE = 0.9


def answers_one_class(result: dict) -> bool:
    """An evaluation's model gives one class to :data:`COLLAPSED_SHARE` of the images or more, which are not
    themselves that much of one class (a test split of one class is answered so by any model that is right)."""
    return (result.get("top_class_share", 0.0) >= COLLAPSED_SHARE
            and result.get("top_class_label_share", 0.0) < COLLAPSED_SHARE)


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable, device: torch.device, amp: bool = True,
             reference: nn.Module | None = None, num_classes: int | None = None, oom_hint: str = "") -> dict[str, float]:
    """Top-1 accuracy of ``model``; with ``reference`` also its accuracy and their agreement.

    ``nonfinite_share``: the share of images with a non-finite logit; ``logit_range``: how far any one logit moves
    over the images (the largest max - min over the finite ones, nan when none is finite; about 0 when the model
    answers every image alike, as a network whose last activations died does; with ``reference`` also
    ``reference_logit_range``, the same for the reference, the scale to compare it with); with ``num_classes`` also
    ``top_class`` and ``top_class_share``, the class ``model`` predicts most often and the share of images it gives
    that class, and ``top_class_label_share``, the share of images that are of that class (every rank counts
    ``num_classes`` votes, so that the sum over ranks has one length even where a rank has no images).
    ``oom_hint`` ends the out-of-memory message: what else the caller holds on the device that could be lowered.

    Counts stay on the device until the end: one host sync per evaluation. Under torchrun
    every rank first takes rank 0's BatchNorm running statistics (DDP keeps each rank's own
    between forward passes), so that all ranks evaluate the model rank 0 writes.
    """
    dist.broadcast_buffers(model)
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=device)
    agree = torch.zeros_like(correct)
    ref_correct = torch.zeros_like(correct)
    nonfinite = torch.zeros_like(correct)
    votes = torch.zeros(num_classes or 0, dtype=torch.long, device=device)  # images per predicted class
    truth = torch.zeros_like(votes)  # images per true class
    spread = torch.full((), -torch.inf, device=device)  # the largest range of one logit over the images
    ref_spread = spread.clone()  # the same for the reference
    total = 0
    try:
        for images, labels in batches:
            try:
                with autocast(device, amp):
                    logits = model(images)
                    pred = logits.argmax(1)
                    if reference is not None:
                        ref_logits = reference(images)
                        ref_pred = ref_logits.argmax(1)
            except torch.OutOfMemoryError:
                raise DatafreeError(f"out of GPU memory evaluating batches of {images.shape[0]} images: lower "
                                    f"data.eval_batch_size (e.g. data.eval_batch_size={max(1, images.shape[0] // 2)}){oom_hint}.") from None
            correct += (pred == labels).sum()
            finite = torch.isfinite(logits).all(1)
            nonfinite += (~finite).sum()
            spread = torch.maximum(spread, _logit_range(logits, finite))
            if num_classes:  # a comparison, not bincount: bincount sizes its output from the data (a host sync)
                votes += (pred[:, None] == torch.arange(num_classes, device=pred.device)).sum(0)
                truth += (labels[:, None] == torch.arange(num_classes, device=labels.device)).sum(0)
            if reference is not None:
                agree += (pred == ref_pred).sum()
                ref_correct += (ref_pred == labels).sum()
                ref_spread = torch.maximum(ref_spread, _logit_range(ref_logits, torch.isfinite(ref_logits).all(1)))
            total += labels.shape[0]
    finally:
        model.train(was_training)
    counts = dist.all_reduce_(torch.cat([torch.stack([correct, agree, ref_correct, nonfinite,
                                                      torch.full_like(correct, total)]), votes, truth]))
    spread = dist.all_reduce_(torch.stack([spread, ref_spread]), op="max")
    counts = torch.cat([counts.double(), spread.double()]).tolist()  # one copy to the host (exact below 2^53)
    classes = (len(counts) - 7) // 2
    (correct, agree, ref_correct, nonfinite, total) = map(int, counts[:5])
    votes, truth = [int(v) for v in counts[5:5 + classes]], [int(v) for v in counts[5 + classes:-2]]
    spread, ref_spread = (value if value > -math.inf else math.nan for value in counts[-2:])  # nan: none finite
    if total == 0:
        return {"accuracy": float("nan")}
    result = {"accuracy": correct / total, "nonfinite_share": nonfinite / total, "logit_range": spread}
    if votes:
        top = max(range(len(votes)), key=votes.__getitem__)
        result.update(top_class=top, top_class_share=votes[top] / total, top_class_label_share=truth[top] / total)
    if reference is not None:
        result["reference_accuracy"] = ref_correct / total
        result["agreement"] = agree / total
        result["reference_logit_range"] = ref_spread
    return result


def _logit_range(logits: torch.Tensor, finite: torch.Tensor) -> torch.Tensor:
    """The largest range (max - min over the batch) of any one logit, over the rows ``finite`` marks (those whose
    logits are all finite); -inf when there is none. ``where()``, not a mask index: a mask index sizes its output
    from the data (a host sync)."""
    logits, rows = logits.float(), finite[:, None]
    return (torch.where(rows, logits, -torch.inf).amax(0) - torch.where(rows, logits, torch.inf).amin(0)).max()
