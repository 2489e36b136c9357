"""Supervised training of a classifier on real data: how teachers are made."""
from __future__ import annotations

import math
import time
from typing import Iterable, Sized

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from datafree.errors import DatafreeError
from datafree.evaluate import evaluate
from datafree.utils.device import autocast
from datafree.utils.logging import RunLogger


def lr_at(progress: float, schedule: str, warmup: float) -> float:
    """Multiplier of the peak learning rate at ``progress`` in [0, 1].

    ``onecycle``: linear warm-up over the first ``warmup`` fraction, then linear
    decay to 0; ``cosine``: the same warm-up, then cosine decay to 0.
    """
    if warmup > 0 and progress < warmup:
        return progress / warmup
    rest = (progress - warmup) / max(1e-8, 1 - warmup)
    if schedule == "onecycle":
        return max(0.0, 1.0 - rest)
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * min(1.0, rest)))
    raise DatafreeError(f"unknown learning-rate schedule {schedule!r}: choose 'onecycle' or 'cosine'.")


def train_classifier(
    model: nn.Module,
    train_batches: Iterable,
    test_batches: Iterable | None,
    device: torch.device,
    *,
    epochs: int,
    lr: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    label_smoothing: float = 0.1,
    schedule: str = "onecycle",
    warmup: float = 0.15,
    amp: bool = True,
    time_budget_s: float | None = None,
    logger: RunLogger | None = None,
    progress: bool = True,
) -> dict[str, float]:
    """SGD with Nesterov momentum, per-step LR schedule, label smoothing, bf16 on GPU.

    With ``time_budget_s`` the schedule follows the clock (whichever of steps
    and time is further along) and training ends when the budget is spent, so
    a run fits a fixed slot on any machine. Evaluates on ``test_batches``
    after each epoch; returns the final accuracy, epochs run and wall time.
    """
    if epochs < 1:
        raise DatafreeError(f"teacher.train.epochs must be >= 1, got {epochs}.")
    if time_budget_s is not None and time_budget_s <= 0:
        raise DatafreeError(f"teacher.train.time_budget_s must be positive or null, got {time_budget_s}.")
    lr_at(0.5, schedule, warmup)  # fail on a bad schedule name before any work
    logger = logger or RunLogger(".", tensorboard=False, enabled=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, nesterov=momentum > 0,
                                weight_decay=weight_decay)
    steps_per_epoch = len(train_batches) if isinstance(train_batches, Sized) else None
    total = epochs * steps_per_epoch if steps_per_epoch else None
    started = time.perf_counter()
    step = 0
    epochs_run = 0
    out_of_time = False
    accuracy = float("nan")
    bar = tqdm(total=total, desc="train-teacher", disable=not (progress and logger.enabled), dynamic_ncols=True, leave=False)
    try:
        for epoch in range(epochs):
            model.train()
            loss_sum = torch.zeros((), device=device)
            batches = 0
            for images, labels in train_batches:
                fraction = step / total if total else epoch / epochs
                if time_budget_s:
                    fraction = max(fraction, (time.perf_counter() - started) / time_budget_s)
                    if fraction >= 1.0:
                        out_of_time = True
                        break
                for group in optimizer.param_groups:
                    group["lr"] = lr * lr_at(fraction, schedule, warmup)
                with autocast(device, amp):
                    logits = model(images)
                loss = F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_sum += loss.detach()
                batches += 1
                step += 1
                bar.update(1)
            epochs_run += 1
            train_loss = (loss_sum / max(1, batches)).item()
            row = {"epoch": epoch + 1, "train_loss": train_loss, "time_s": round(time.perf_counter() - started, 2)}
            if test_batches is not None:
                accuracy = evaluate(model, test_batches, device, amp)["accuracy"]
                row["test_accuracy"] = accuracy
            if not math.isfinite(train_loss):
                raise DatafreeError(
                    f"teacher training diverged (loss {train_loss}) in epoch {epoch + 1}: lower teacher.train.lr."
                )
            bar.set_postfix(loss=f"{train_loss:.3f}", acc=f"{accuracy:.4f}")
            logger.scalars(epoch + 1, {"teacher/train_loss": train_loss, "teacher/test_accuracy": accuracy})
            logger.summary(row)
            logger.info(f"epoch {epoch + 1}/{epochs}: loss {train_loss:.4f} test accuracy {accuracy:.4f} ({row['time_s']:.0f}s)")
            if out_of_time:
                logger.info(f"time budget of {time_budget_s}s spent after {epochs_run} epochs")
                break
    finally:
        bar.close()
    return {"test_accuracy": accuracy, "epochs": epochs_run, "wall_time_s": time.perf_counter() - started}
