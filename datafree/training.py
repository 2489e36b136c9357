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
from datafree.utils.nonfinite import NonFiniteGuard, fused_sgd
from datafree.utils.run_state import StateFiles, rng_state, set_rng_state
from datafree.utils.signals import StopRequest, interrupted


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
    state: StateFiles | None = None,
    checkpoint_every: int = 1000,
    max_nonfinite: int = 20,
) -> dict[str, float]:
    """SGD with Nesterov momentum, per-step LR schedule, label smoothing, bf16 on GPU.

    With ``time_budget_s`` the schedule follows the clock (whichever of steps
    and time is further along) and training ends when the budget is spent, so
    a run fits a fixed slot on any machine. Evaluates on ``test_batches``
    after each epoch; returns the final accuracy, epochs run and wall time.

    With ``state`` the full state (model, optimizer, data order and position, RNG)
    is saved every ``checkpoint_every`` steps, on SIGTERM/SIGINT and at the end, and
    a run with ``state.resume`` continues from the newest one; ``train_batches``
    must then be a :class:`~datafree.data.DeviceBatches` (it has a state_dict).
    Steps with a non-finite loss or gradient are skipped on the device; after
    ``max_nonfinite`` in a row the run stops.
    """
    if epochs < 1:
        raise DatafreeError(f"teacher.train.epochs must be >= 1, got {epochs}.")
    if time_budget_s is not None and time_budget_s <= 0:
        raise DatafreeError(f"teacher.train.time_budget_s must be positive or null, got {time_budget_s}.")
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) or checkpoint_every < 0:
        raise DatafreeError(f"teacher.train.checkpoint_every counts steps between full-state checkpoints: give an int >= 0 "
                            f"(0 = only on a signal and at the end), not {checkpoint_every!r}.")
    lr_at(0.5, schedule, warmup)  # fail on a bad schedule name before any work
    logger = logger or RunLogger(".", tensorboard=False, enabled=False)
    optimizer = fused_sgd(model.parameters(), lr=lr, momentum=momentum, nesterov=momentum > 0, weight_decay=weight_decay)
    guard = NonFiniteGuard(device, ("ce",), max_nonfinite, what="step")
    steps_per_epoch = len(train_batches) if isinstance(train_batches, Sized) else None
    total = epochs * steps_per_epoch if steps_per_epoch else None
    started = time.perf_counter()
    step = 0
    epochs_run = 0
    out_of_time = False
    accuracy = float("nan")
    first_epoch, loss_sum, good = 0, torch.zeros((), device=device), torch.zeros((), device=device)
    saved = state.load() if state is not None else None
    if saved is not None:
        first_epoch, step, epochs_run, accuracy = saved["epoch"], saved["step"], saved["epochs_run"], saved["accuracy"]
        loss_sum, good = saved["loss_sum"].to(device), saved["good"].to(device)
        started -= saved["elapsed_s"]
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        guard.load_state_dict(saved["guard"])
        train_batches.load_state_dict(saved["batches_state"])
        set_rng_state(saved["rng"])
        logger.info(f"resumed from {state.last_saved}: epoch {first_epoch + 1}, step {step}")

    def save_state(epoch: int, force: bool = False, is_best: bool = False):
        """Everything needed to continue exactly after the last step (or at the start of ``epoch``)."""
        if state is None:
            return None
        if not force and int(guard.streak.item()):  # saving syncs anyway; never replace a good state by a bad one
            return None
        return state.save({
            "kind": "train-teacher", "epoch": epoch, "step": step, "epochs_run": epochs_run, "accuracy": accuracy,
            "loss_sum": loss_sum, "good": good, "best": best, "elapsed_s": time.perf_counter() - started,
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "guard": guard.state_dict(),
            "batches_state": train_batches.state_dict(), "rng": rng_state(),
        }, best=is_best)

    def stop_here(stop: StopRequest, epoch: int):
        path = save_state(epoch, force=True)
        raise interrupted(stop.signum, f"step {step} (epoch {epoch + 1})", path)

    def check_guard() -> None:
        # One device-to-host copy: stops the run after max_nonfinite skipped steps in a row.
        last_good = str(state.last_saved) if state is not None and state.last_saved else None
        guard.check(torch.stack(guard.tensors()).tolist(), step, last_good,
                    "Lower teacher.train.lr, or check the data for broken images.")

    bar = tqdm(total=total, initial=step, desc="train-teacher", disable=not (progress and logger.enabled),
               dynamic_ncols=True, leave=False)
    best = saved["best"] if saved is not None else -math.inf
    try:
        with StopRequest() as stop:
            for epoch in range(first_epoch, epochs):
                model.train()
                if epoch != first_epoch or saved is None:
                    loss_sum = torch.zeros((), device=device)
                    good = torch.zeros((), device=device)
                epoch_start = step
                for images, labels in train_batches:
                    fraction = step / total if total else epoch / epochs
                    if time_budget_s:
                        fraction = max(fraction, (time.perf_counter() - started) / time_budget_s)
                        if fraction >= 1.0:
                            out_of_time = True
                            break
                    for group in optimizer.param_groups:
                        group["lr"] = lr * lr_at(fraction, schedule, warmup)
                    try:
                        with autocast(device, amp):
                            logits = model(images)
                        loss = F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)
                        optimizer.zero_grad(set_to_none=True)
                        loss.backward()
                    except torch.OutOfMemoryError:
                        raise DatafreeError(f"out of GPU memory training on batches of {images.shape[0]} images: lower "
                                            f"data.batch_size (e.g. data.batch_size={max(1, images.shape[0] // 2)}).") from None
                    found = guard.step(optimizer, loss, {"ce": loss})  # skipped on the device when not finite
                    loss_sum += torch.where(found.bool(), 0.0, loss.detach())
                    good += 1 - found
                    step += 1
                    bar.update(1)
                    if stop.requested:
                        stop_here(stop, epoch)
                    if checkpoint_every and step % checkpoint_every == 0:
                        check_guard()
                        save_state(epoch)
                if out_of_time and step == epoch_start:
                    # The budget ran out at an epoch boundary: there is no epoch to evaluate (and no loss to average).
                    logger.info(f"time budget of {time_budget_s}s spent after {epochs_run} epochs")
                    break
                epochs_run += 1
                check_guard()
                train_loss = (loss_sum / good).item()
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
                if accuracy > best and checkpoint_every:  # NaN (no test set) is never better
                    best = accuracy
                    save_state(epoch + 1, is_best=True)
                if out_of_time:
                    logger.info(f"time budget of {time_budget_s}s spent after {epochs_run} epochs")
                    break
                if stop.requested:
                    stop_here(stop, epoch + 1)
            save_state(epochs_run if not out_of_time else epoch, force=True)
    finally:
        bar.close()
    return {"test_accuracy": accuracy, "epochs": epochs_run, "wall_time_s": time.perf_counter() - started}
