"""Accuracy on a real held-out set, and teacher-student agreement, in one pass.

Under torchrun each rank evaluates its share of the test set (``DeviceBatches`` with a
``shard``) and the counts are summed over the ranks, so every rank gets the same result.
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from datafree.errors import DatafreeError
from datafree.utils import dist
from datafree.utils.device import autocast


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable, device: torch.device, amp: bool = True,
             reference: nn.Module | None = None) -> dict[str, float]:
    """Top-1 accuracy of ``model``; with ``reference`` also its accuracy and their agreement.

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
    total = 0
    try:
        for images, labels in batches:
            try:
                with autocast(device, amp):
                    pred = model(images).argmax(1)
                    if reference is not None:
                        ref_pred = reference(images).argmax(1)
            except torch.OutOfMemoryError:
                raise DatafreeError(f"out of GPU memory evaluating batches of {images.shape[0]} images: lower "
                                    f"data.eval_batch_size (e.g. data.eval_batch_size={max(1, images.shape[0] // 2)}).") from None
            correct += (pred == labels).sum()
            if reference is not None:
                agree += (pred == ref_pred).sum()
                ref_correct += (ref_pred == labels).sum()
            total += labels.shape[0]
    finally:
        model.train(was_training)
    counts = torch.stack([correct, agree, ref_correct, torch.full_like(correct, total)])
    correct, agree, ref_correct, total = dist.all_reduce_(counts).tolist()
    if total == 0:
        return {"accuracy": float("nan")}
    result = {"accuracy": correct / total}
    if reference is not None:
        result["reference_accuracy"] = ref_correct / total
        result["agreement"] = agree / total
    return result
