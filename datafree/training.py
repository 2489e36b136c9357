"""Supervised training of a classifier on real data: how teachers are made."""
from __future__ import annotations

import math
from typing import Iterable, Sized

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from datafree.errors import DatafreeError
from datafree.evaluate import evaluate
from datafree.recipe_nodes import recipe_defaults
from datafree.utils import dist
from datafree.utils.device import autocast
from datafree.utils.logging import RunLogger
from datafree.utils.loop import Loop, Snapshot, check_loop_settings, lr_at
from datafree.utils.nonfinite import NonFiniteGuard, fused_sgd, load_optimizer_state
from datafree.utils.run_state import StateFiles


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
    max_nonfinite: int | None = None,
    num_classes: int | None = None,
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
    ``max_nonfinite`` in a row the run stops (None: the teacher training recipe's, teacher/train/cifar.yaml).

    With ``num_classes`` each evaluation also counts the predicted classes; the result then has the last one's
    ``top_class`` and ``top_class_share`` (a teacher that answers one class: :data:`~datafree.evaluate.COLLAPSED_SHARE`).

    Under torchrun the model trains through DDP: give every rank ``train_batches`` sharded
    (``DeviceBatches(shard=(rank, world))``: each step is one global batch) and ``test_batches``
    sharded likewise; the epoch's loss and the accuracy are those of all ranks.
    """
    if epochs < 1:
        raise DatafreeError(f"teacher.train.epochs must be >= 1, got {epochs}.")
    check_loop_settings("teacher.train.", "step", time_budget_s=time_budget_s, checkpoint_every=checkpoint_every)
    lr_at(0.5, schedule, warmup)  # fail on a bad schedule name before any work
    logger = logger or RunLogger(".", tensorboard=False, enabled=False)
    optimizer = fused_sgd(model.parameters(), lr=lr, momentum=momentum, nesterov=momentum > 0, weight_decay=weight_decay)
    if max_nonfinite is None:
        max_nonfinite = int(recipe_defaults("teacher/train/cifar")["max_nonfinite"])
    guard = NonFiniteGuard(device, ("ce",), max_nonfinite, what="step", shared=True)
    step_model = dist.data_parallel(model, device)  # the training forward pass; the model itself is saved
    # Epoch losses are read back only at epoch ends, so the guard is also read before each periodic save.
    loop = Loop("train-teacher", state, guard, logger, hint="Lower teacher.train.lr, or check the data for broken images.",
                time_budget_s=time_budget_s, checkpoint_every=checkpoint_every, check_at_checkpoints=True)
    steps_per_epoch = len(train_batches) if isinstance(train_batches, Sized) else None
    total = epochs * steps_per_epoch if steps_per_epoch else None
    step = 0
    epochs_run = 0
    out_of_time = False
    accuracy = float("nan")
    classes: dict[str, float] = {}  # the last evaluation's top_class and top_class_share (with num_classes)
    first_epoch, loss_sum, good = 0, torch.zeros((), device=device), torch.zeros((), device=device)

    def restore(saved: dict) -> None:
        model.load_state_dict(saved["model"])
        load_optimizer_state(optimizer, saved["optimizer"])
        train_batches.load_state_dict(saved["batches_state"])

    saved = loop.resume(restore)
    if saved is not None:
        first_epoch, step, epochs_run, accuracy = saved["epoch"], saved["step"], saved["epochs_run"], saved["accuracy"]
        loss_sum, good = saved["loss_sum"].to(device), saved["good"].to(device)
        logger.info(f"resumed from {state.last_saved}: epoch {first_epoch + 1}, step {step}")

    def snapshot(epoch: int) -> Snapshot:
        """Everything needed to continue exactly after the last step (or at the start of ``epoch``)."""
        return lambda: {
            "epoch": epoch, "step": step, "epochs_run": epochs_run, "accuracy": accuracy, "loss_sum": loss_sum,
            "good": good, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "batches_state": train_batches.state_dict(),
        }

    bar = tqdm(total=total, initial=step, desc="train-teacher", disable=not (progress and logger.enabled),
               dynamic_ncols=True, leave=False)
    try:
        with loop:
            for epoch in range(first_epoch, epochs):
                model.train()
                if epoch != first_epoch or saved is None:
                    loss_sum = torch.zeros((), device=device)
                    good = torch.zeros((), device=device)
                epoch_start = step
                for images, labels in train_batches:
                    if loop.spent():
                        out_of_time = True
                        break
                    fraction = loop.fraction(step, total) if total else loop.fraction(epoch, epochs)
                    for group in optimizer.param_groups:
                        group["lr"] = lr * lr_at(fraction, schedule, warmup)
                    try:
                        with autocast(device, amp):
                            logits = step_model(images)
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
                    loop.step_done(step, f"step {step} (epoch {epoch + 1})", snapshot(epoch))
                if out_of_time and step == epoch_start:
                    # The budget ran out at an epoch boundary: there is no epoch to evaluate (and no loss to average).
                    logger.info(f"time budget of {time_budget_s}s spent after {epochs_run} epochs")
                    break
                epochs_run += 1
                loop.check(step)
                totals = dist.all_reduce_(torch.stack([loss_sum, good]))  # every rank's batches
                train_loss = (totals[0] / totals[1]).item()
                row = {"epoch": epoch + 1, "train_loss": train_loss, "time_s": round(loop.elapsed(), 2)}
                if test_batches is not None:
                    result = evaluate(model, test_batches, device, amp, num_classes=num_classes)
                    accuracy = result["accuracy"]
                    classes = {k: result[k] for k in ("top_class", "top_class_share", "top_class_label_share")
                               if k in result}
                    row["test_accuracy"] = accuracy
                if not math.isfinite(train_loss):
                    raise DatafreeError(
                        f"teacher training diverged (loss {train_loss}) in epoch {epoch + 1}: lower teacher.train.lr."
                    )
                bar.set_postfix(loss=f"{train_loss:.3f}", acc=f"{accuracy:.4f}")
                logger.scalars(epoch + 1, {"teacher/train_loss": train_loss, "teacher/test_accuracy": accuracy})
                logger.summary(row)
                logger.info(f"epoch {epoch + 1}/{epochs}: loss {train_loss:.4f} test accuracy {accuracy:.4f} ({row['time_s']:.0f}s)")
                loop.save_if_best(accuracy, snapshot(epoch + 1))
                if out_of_time:
                    logger.info(f"time budget of {time_budget_s}s spent after {epochs_run} epochs")
                    break
                loop.stop_point(f"step {step} (end of epoch {epoch + 1})", snapshot(epoch + 1))
            loop.save(snapshot(epochs_run if not out_of_time else epoch), force=True)
    finally:
        bar.close()
    return {"test_accuracy": accuracy, "epochs": epochs_run, "wall_time_s": loop.elapsed(), **classes}
