"""Offline distillation: a student learns from a synthetic data set's stored teacher logits; no teacher runs.

The schedule is the online loop's (:class:`~datafree.distill.trainer.Distiller`), so that the
two compare like for like: ``steps`` student updates of the loader's batch size, a cosine
learning rate (following the clock under a time budget), the same KD loss on logits, NaN/Inf
steps skipped on the device, evaluation and ``student.pt`` every ``eval_every`` steps, the
full state every ``checkpoint_every`` steps and on SIGTERM/SIGINT, and exact resume.
"""
from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Iterable

import torch
from torch import nn
from tqdm.auto import tqdm

from datafree.errors import DatafreeError
from datafree.evaluate import evaluate
from datafree.export.stream import SyntheticBatches
from datafree.teachers import ClassifierInfo, save_classifier
from datafree.utils.device import autocast
from datafree.utils.logging import RunLogger
from datafree.utils.nonfinite import NonFiniteGuard, fused_adam, fused_sgd
from datafree.utils.run_state import StateFiles, rng_state, set_rng_state
from datafree.utils.signals import StopRequest, interrupted


@dataclasses.dataclass
class OfflineResult:
    student_accuracy: float | None
    steps: int
    epochs: int  # passes over the data set started
    wall_time_s: float
    stopped_by: str
    skipped_steps: int = 0


def make_optimizer(name: str, params, lr: float, momentum: float, weight_decay: float) -> torch.optim.Optimizer:
    if name == "sgd":
        return fused_sgd(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=momentum > 0)
    if name == "adam":
        return fused_adam(params, lr=lr, weight_decay=weight_decay)
    raise DatafreeError(f"unknown trainer.optimizer {name!r}: choose 'sgd' or 'adam'.")


def student_step(student: nn.Module, optimizer: torch.optim.Optimizer, loss: nn.Module, guard: NonFiniteGuard,
                 images: torch.Tensor, teacher_logits: torch.Tensor, amp: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """One update on stored logits, skipped on the device when not finite; (loss, skipped flag), no host sync."""
    try:
        with autocast(images.device, amp):
            student_logits = student(images).float()
        value = loss(student_logits, teacher_logits)
        optimizer.zero_grad(set_to_none=True)
        value.backward()
    except torch.OutOfMemoryError:
        raise DatafreeError(f"out of GPU memory in a student step with trainer.batch_size={images.shape[0]}: "
                            f"lower it (e.g. trainer.batch_size={max(1, images.shape[0] // 2)}).") from None
    found = guard.step(optimizer, value, {guard.terms[0]: value})
    return value.detach(), found


def distill_offline(
    student: nn.Module,
    batches: SyntheticBatches,
    loss: nn.Module,
    *,
    device: torch.device,
    steps: int,
    lr: float = 0.1,
    optimizer: str = "sgd",
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    eval_every: int = 1000,
    log_every: int = 50,
    time_budget_s: float | None = None,
    checkpoint_every: int = 1000,
    max_nonfinite: int = 20,
    amp: bool = True,
    test_batches: Iterable | None = None,
    logger: RunLogger | None = None,
    student_info: ClassifierInfo | None = None,
    checkpoint_path: str | Path | None = None,
    state: StateFiles | None = None,
    progress: bool = True,
) -> OfflineResult:
    """Train ``student`` for ``steps`` steps on ``batches`` (images, stored teacher logits) with ``loss(student, teacher)``."""
    if steps < 1:
        raise DatafreeError(f"offline distillation needs at least one student step (trainer.rounds x trainer.student_steps), got {steps}.")
    logger = logger or RunLogger(".", tensorboard=False, enabled=False)
    opt = make_optimizer(optimizer, [p for p in student.parameters() if p.requires_grad], lr, momentum, weight_decay)
    name = getattr(loss, "name", type(loss).__name__.lower())
    guard = NonFiniteGuard(device, (name,), max_nonfinite, what="student step")
    checkpoint_path = Path(checkpoint_path) if checkpoint_path else None

    # -- the clock and the position ----------------------------------------------------------------------
    started = time.perf_counter()
    step, loss_sum, loss_count, skipped, metrics, best = 0, torch.zeros((), device=device), 0, 0, {}, -math.inf
    saved = state.load() if state is not None else None
    if saved is not None:
        step, loss_count, skipped, metrics, best = saved["step"], saved["loss_count"], saved["skipped"], dict(saved["metrics"]), saved["best"]
        loss_sum = saved["loss_sum"].to(device)
        started -= saved["elapsed_s"]
        student.load_state_dict(saved["student"])
        opt.load_state_dict(saved["optimizer"])
        guard.load_state_dict(saved["guard"])
        batches.load_state_dict(saved["batches"])
        set_rng_state(saved["rng"])
        logger.info(f"resumed from {state.last_saved} after student step {step}")

    def save_state(force: bool = False, is_best: bool = False):
        if state is None or (not force and int(guard.streak.item())):  # never replace a good state by a bad one
            return None
        return state.save({"kind": "distill-offline", "step": step, "loss_sum": loss_sum, "loss_count": loss_count,
                           "skipped": skipped, "metrics": metrics, "best": best, "elapsed_s": time.perf_counter() - started,
                           "student": student.state_dict(), "optimizer": opt.state_dict(), "guard": guard.state_dict(),
                           "batches": batches.state_dict(), "rng": rng_state()}, best=is_best)

    def evaluate_and_save() -> dict:
        row = {"step": step, "epoch": batches.epoch, "time_s": round(time.perf_counter() - started, 2),
               "skipped_steps": int(guard.skipped.item())}
        if test_batches is not None:
            row["student_accuracy"] = evaluate(student, test_batches, device, amp)["accuracy"]
            logger.scalars(step, {"eval/student_accuracy": row["student_accuracy"]})
            logger.info(f"step {step}: student {row['student_accuracy']:.4f} ({row['time_s']:.0f}s)")
        logger.summary(row)
        if checkpoint_path is not None and student_info is not None and logger.enabled:
            save_classifier(checkpoint_path, student, dataclasses.replace(student_info, test_accuracy=row.get("student_accuracy")))
        return row

    # -- the loop ----------------------------------------------------------------------------------------
    stopped_by = "steps"
    student.train()
    bar = tqdm(total=steps, initial=step, desc="distill (offline)", disable=not (progress and logger.enabled),
               dynamic_ncols=True, leave=False)
    stream = iter(batches)
    try:
        with StopRequest() as stop:
            while step < steps:
                elapsed = time.perf_counter() - started
                if time_budget_s and elapsed >= time_budget_s:
                    stopped_by = "time budget"
                    break
                done = max(step / steps, elapsed / time_budget_s if time_budget_s else 0.0)
                for group in opt.param_groups:
                    group["lr"] = 0.5 * lr * (1 + math.cos(math.pi * min(1.0, done)))
                value, found = student_step(student, opt, loss, guard, *next(stream), amp=amp)
                loss_sum += torch.where(found.bool(), 0.0, value)
                loss_count += 1
                step += 1
                bar.update(1)
                if step % log_every == 0:
                    values = torch.stack([loss_sum, *guard.tensors()]).tolist()  # one device-to-host copy
                    last = str(state.last_saved) if state is not None and state.last_saved else None
                    new_skips = guard.check(values[1:], step, last, "Lower trainer.lr.") - skipped
                    skipped += new_skips
                    mean = values[0] / max(1, loss_count - new_skips)
                    bar.set_postfix(loss=f"{mean:.4f}")
                    logger.scalars(step, {"train/kd_loss": mean, "train/lr": opt.param_groups[0]["lr"],
                                          "train/skipped_steps": skipped})
                    loss_sum.zero_()
                    loss_count = 0
                if step % eval_every == 0:
                    metrics = evaluate_and_save()
                    accuracy = metrics.get("student_accuracy")
                    if accuracy is not None and accuracy > best and checkpoint_every:
                        best = accuracy
                        save_state(is_best=True)
                if stop.requested:
                    path = save_state(force=True)
                    raise interrupted(stop.signum, f"student step {step}", path)
                if checkpoint_every and step % checkpoint_every == 0:
                    save_state()
            if not metrics or metrics.get("step") != step:
                metrics = evaluate_and_save()
            skipped = int(guard.skipped.item())
            save_state(force=True)
    finally:
        bar.close()
    return OfflineResult(student_accuracy=metrics.get("student_accuracy"), steps=step, epochs=batches.epoch + 1,
                         wall_time_s=time.perf_counter() - started, stopped_by=stopped_by, skipped_steps=skipped)
