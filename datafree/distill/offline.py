"""Offline distillation: a student learns from a synthetic data set's stored teacher logits; no teacher runs.

The schedule is the online loop's (:class:`~datafree.distill.trainer.Distiller`), so that the
two compare like for like: ``steps`` student updates of the loader's batch size, a cosine
learning rate (following the clock under a time budget), the same KD loss on logits, NaN/Inf
steps skipped on the device, evaluation and ``student.pt`` every ``eval_every`` steps. The
clock, stop requests, full-state saves and resume are the shared :class:`~datafree.utils.loop.Loop`'s.
Under torchrun the student trains through DDP, each rank on its own stream of the set (its
own seed), and evaluation is sharded.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterable

import torch
from torch import nn
from tqdm.auto import tqdm

from datafree.distill.objectives import Objectives
from datafree.errors import DatafreeError
from datafree.evaluate import evaluate
from datafree.export.stream import SyntheticBatches
from datafree.teachers import ClassifierInfo, save_classifier
from datafree.training import lr_at
from datafree.utils import dist
from datafree.utils.device import autocast
from datafree.utils.graphs import set_lr
from datafree.utils.logging import RunLogger
from datafree.utils.loop import Loop, check_loop_settings
from datafree.utils.nonfinite import NonFiniteGuard, fused_optimizer
from datafree.utils.run_state import StateFiles


@dataclasses.dataclass
class OfflineResult:
    student_accuracy: float | None
    steps: int
    epochs: int  # passes over the data set started
    wall_time_s: float
    stopped_by: str
    skipped_steps: int = 0


def student_step(student: nn.Module, optimizer: torch.optim.Optimizer, loss: nn.Module, guard: NonFiniteGuard,
                 images: torch.Tensor, teacher_logits: torch.Tensor, amp: bool = True,
                 clip_grad_norm: float | None = None, objectives: Objectives | None = None,
                 loss_name: str = "kd") -> tuple[torch.Tensor, torch.Tensor]:
    """One update on stored logits, skipped on the device when not finite; (the values of ``objectives.logged``,
    skipped flag), no host sync. ``objectives``: the terms on logits beside the KD loss (relation, adversarial)."""
    try:
        with autocast(images.device, amp):
            student_logits = student(images).float()
        value = loss(student_logits, teacher_logits)
        terms = {loss_name: value}
        if objectives is not None:
            value, terms = objectives.student_loss(loss_name, value, student_logits, teacher_logits.float())
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        if clip_grad_norm:  # as the online loop does (trainer.clip_grad_norm): a device-side rescale
            params = [p for group in optimizer.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(params, clip_grad_norm, foreach=True)
    except torch.OutOfMemoryError:
        raise DatafreeError(f"out of GPU memory in a student step with trainer.batch_size={images.shape[0]}: "
                            f"lower it (e.g. trainer.batch_size={max(1, images.shape[0] // 2)}).") from None
    found = guard.step(optimizer, value, terms)
    values = objectives.step_values(value, terms) if objectives is not None else value.detach().reshape(1)
    return values, found


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
    clip_grad_norm: float | None = None,
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
    objectives: Objectives | None = None,
) -> OfflineResult:
    """Train ``student`` for ``steps`` steps on ``batches`` (images, stored teacher logits) with ``loss(student, teacher)``
    plus the terms of ``objectives`` that need no teacher (on logits: RKD, the discriminator)."""
    if steps < 1:
        raise DatafreeError(f"offline distillation needs at least one student step (trainer.rounds x trainer.student_steps), got {steps}.")
    check_loop_settings("trainer.", "student step", time_budget_s=time_budget_s, checkpoint_every=checkpoint_every)
    logger = logger or RunLogger(".", tensorboard=False, enabled=False)
    loss_name = getattr(loss, "name", type(loss).__name__.lower())
    params = [p for p in student.parameters() if p.requires_grad]
    params += objectives.student_parameters() if objectives is not None else []
    opt = fused_optimizer(optimizer, params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    guard = NonFiniteGuard(device, (loss_name, *(objectives.names if objectives else ())), max_nonfinite,
                           what="student step", shared=True)
    logged = objectives.logged(loss_name) if objectives is not None else ("loss",)
    step_student = dist.data_parallel(student, device)  # the training forward pass; the student itself is saved
    loop = Loop("distill-offline", state, guard, logger, hint="Lower trainer.lr.", time_budget_s=time_budget_s,
                checkpoint_every=checkpoint_every)
    checkpoint_path = Path(checkpoint_path) if checkpoint_path else None
    step, loss_sum, loss_count, skipped, metrics = 0, torch.zeros(len(logged), device=device), 0, 0, {}

    def restore(saved: dict) -> None:
        student.load_state_dict(saved["student"])
        opt.load_state_dict(saved["optimizer"])
        batches.load_state_dict(saved["batches"])
        if objectives is not None:
            objectives.load_state_dict(saved)

    saved = loop.resume(restore)
    if saved is not None:
        step, loss_count, skipped, metrics = saved["step"], saved["loss_count"], saved["skipped"], dict(saved["metrics"])
        loss_sum = saved["loss_sum"].to(device).reshape(-1)  # a scalar in states written before the terms
        logger.info(f"resumed from {loop.last_good()} after student step {step}")

    def snapshot() -> dict:
        return {"step": step, "loss_sum": loss_sum, "loss_count": loss_count, "skipped": skipped, "metrics": metrics,
                "student": student.state_dict(), "optimizer": opt.state_dict(), "batches": batches.state_dict(),
                **(objectives.state_dict() if objectives is not None else {})}

    last_terms: dict[str, float] = {}  # each term's mean (and the discriminator's metrics) at the latest log

    def evaluate_and_save() -> dict:
        row = {"step": step, "epoch": batches.epoch, "time_s": round(loop.elapsed(), 2),
               "skipped_steps": int(guard.skipped.item()), **last_terms}
        if test_batches is not None:
            row["student_accuracy"] = evaluate(student, test_batches, device, amp)["accuracy"]
            logger.scalars(step, {"eval/student_accuracy": row["student_accuracy"]})
            logger.info(f"step {step}: student {row['student_accuracy']:.4f} ({row['time_s']:.0f}s)")
        logger.summary(row)
        if checkpoint_path is not None and student_info is not None and logger.enabled:
            save_classifier(checkpoint_path, student, dataclasses.replace(student_info, test_accuracy=row.get("student_accuracy")))
        return row

    stopped_by = "steps"
    student.train()
    bar = tqdm(total=steps, initial=step, desc="distill (offline)", disable=not (progress and logger.enabled),
               dynamic_ncols=True, leave=False)
    stream = iter(batches)
    try:
        with loop:
            while step < steps:
                if loop.spent():
                    stopped_by = "time budget"
                    break
                set_lr(opt, lr * lr_at(loop.fraction(step, steps), "cosine", 0.0))
                values, found = student_step(step_student, opt, loss, guard, *next(stream), amp=amp,
                                             clip_grad_norm=clip_grad_norm, objectives=objectives, loss_name=loss_name)
                loss_sum += torch.where(found.bool(), 0.0, values)
                loss_count += 1
                step += 1
                bar.update(1)
                if step % log_every == 0:
                    values = torch.cat([dist.mean(loss_sum), torch.stack(guard.tensors()).float()]).tolist()  # one device-to-host copy
                    new_skips = loop.check(step, values[len(logged):]) - skipped
                    skipped += new_skips
                    means = [value / max(1, loss_count - new_skips) for value in values[:len(logged)]]
                    bar.set_postfix(loss=f"{means[0]:.4f}")
                    logger.scalars(step, {"train/kd_loss": means[0], "train/lr": opt.param_groups[0]["lr"],
                                          "train/skipped_steps": skipped,
                                          **{f"train/{name}": mean for name, mean in zip(logged[1:], means[1:])}})
                    last_terms.update(zip(logged[1:], means[1:]))  # the summary's next row shows them
                    loss_sum.zero_()
                    loss_count = 0
                if step % eval_every == 0:
                    metrics = evaluate_and_save()
                    loop.save_if_best(metrics.get("student_accuracy"), snapshot)
                loop.step_done(step, f"student step {step}", snapshot)
            if metrics.get("step") != step:
                metrics = evaluate_and_save()
            skipped = int(guard.skipped.item())
            loop.save(snapshot, force=True)  # a finished run resumed with more steps continues from here
    finally:
        bar.close()
    return OfflineResult(student_accuracy=metrics.get("student_accuracy"), steps=step, epochs=batches.epoch + 1,
                         wall_time_s=loop.elapsed(), stopped_by=stopped_by, skipped_steps=skipped)
