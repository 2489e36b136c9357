"""The distillation loop: synthesize a batch, replay, train the student, evaluate.

One round = ``synthesizer.synthesize()`` (its own optimisation), the batch goes
into the replay pool, then ``student_steps`` student updates on batches that
mix fresh images with replayed ones. Everything stays on the device; losses
are read back to the host only every ``log_every`` steps and at evaluations.
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

from datafree.distill.features import build_feature_terms, taps
from datafree.distill.losses import KDLoss
from datafree.distill.pool import SyntheticPool
from datafree.errors import DatafreeError
from datafree.evaluate import evaluate
from datafree.synthesizers.augment import Augment
from datafree.synthesizers.base import Synthesizer
from datafree.teachers import ClassifierInfo, save_classifier
from datafree.utils.device import autocast
from datafree.utils.logging import RunLogger


@dataclasses.dataclass
class DistillResult:
    student_accuracy: float | None
    teacher_accuracy: float | None
    agreement: float | None
    rounds: int
    student_steps: int
    images_synthesized: int
    wall_time_s: float
    stopped_by: str


class Distiller:
    def __init__(
        self,
        teacher: nn.Module,
        student: nn.Module,
        synthesizer: Synthesizer,
        *,
        device: torch.device,
        num_classes: int,
        input_size: tuple[int, int, int],
        rounds: int = 100,
        student_steps: int = 10,
        batch_size: int = 256,
        optimizer: str = "sgd",
        lr: float = 0.1,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        loss: KDLoss | None = None,
        replay: float = 0.5,
        pool_capacity: int = 50_000,
        augment: Augment | None = None,
        eval_every: int = 10,
        log_every: int = 50,
        time_budget_s: float | None = None,
        amp: bool = True,
        test_batches: Iterable | None = None,
        logger: RunLogger | None = None,
        student_info: ClassifierInfo | None = None,
        checkpoint_path: str | Path | None = None,
        grid_path: str | Path | None = None,
        progress: bool = True,
        attention: dict | None = None,
        hint: dict | None = None,
    ):
        if rounds < 1 or student_steps < 0 or batch_size < 1:
            raise DatafreeError(
                f"trainer needs rounds >= 1, student_steps >= 0, batch_size >= 1 (got {rounds}, {student_steps}, {batch_size})."
            )
        if not 0.0 <= replay <= 1.0:
            raise DatafreeError(f"trainer.replay is the replayed fraction of each student batch: give a value in [0, 1], not {replay}.")
        if time_budget_s is not None and time_budget_s <= 0:
            raise DatafreeError(f"trainer.time_budget_s must be positive or null, got {time_budget_s}.")
        self.teacher, self.student, self.synthesizer = teacher, student, synthesizer
        self.device = device
        self.rounds, self.student_steps, self.batch_size = int(rounds), int(student_steps), int(batch_size)
        self.replay = float(replay)
        self.loss = loss or KDLoss()
        self.augment = (augment or Augment(jitter=2, flip=True)).to(device)
        self.eval_every, self.log_every = max(1, int(eval_every)), max(1, int(log_every))
        self.time_budget_s = time_budget_s
        self.amp = amp
        self.test_batches = test_batches
        self.logger = logger or RunLogger(".", tensorboard=False, enabled=False)
        self.student_info = student_info
        self.checkpoint_path = Path(checkpoint_path) if checkpoint_path else None
        self.grid_path = Path(grid_path) if grid_path else None
        self.progress = progress
        self.pool = SyntheticPool(pool_capacity, tuple(input_size), device)
        # Feature terms (ZSKT attention, FitNets hints) over named layers; hint adapters train with the student.
        self.feature_terms = build_feature_terms(teacher, student, input_size, device, attention=attention, hint=hint)
        params = [p for p in student.parameters() if p.requires_grad]
        params += [p for term in self.feature_terms for p in term.parameters()]
        if optimizer == "sgd":
            self.optimizer = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=momentum > 0)
        elif optimizer == "adam":
            self.optimizer = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
        else:
            raise DatafreeError(f"unknown trainer.optimizer {optimizer!r}: choose 'sgd' or 'adam'.")
        self.base_lr = float(lr)
        synthesizer.bind(teacher, student, num_classes, tuple(input_size), device)

    # -- schedule -------------------------------------------------------------------------
    def _progress(self, step: int, total: int, started: float) -> float:
        """Fraction of the run done: by steps, or by wall time when a budget is set, whichever is further."""
        done = step / max(1, total)
        if self.time_budget_s:
            done = max(done, (time.perf_counter() - started) / self.time_budget_s)
        return done

    def _set_lr(self, progress: float) -> None:
        lr = 0.5 * self.base_lr * (1 + math.cos(math.pi * min(1.0, progress)))
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    # -- one student update ---------------------------------------------------------------------
    def _student_batch(self, fresh: torch.Tensor) -> torch.Tensor:
        n_replay = int(round(self.batch_size * self.replay)) if len(self.pool) else 0
        n_fresh = self.batch_size - n_replay
        sampled = self.synthesizer.sample(n_fresh) if n_fresh else None
        if sampled is None and n_fresh:
            sampled = fresh[torch.randint(fresh.shape[0], (n_fresh,), device=fresh.device)]
        parts = [p for p in (sampled, self.pool.sample(n_replay) if n_replay else None) if p is not None]
        return torch.cat(parts) if len(parts) > 1 else parts[0]

    def _student_step(self, fresh: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            inputs = self.augment(self._student_batch(fresh))
            with autocast(self.device, self.amp), taps(self.feature_terms, "teacher"):
                teacher_logits = self.teacher(inputs).float()
        with autocast(self.device, self.amp), taps(self.feature_terms, "student"):
            student_logits = self.student(inputs).float()
        loss = self.loss(student_logits, teacher_logits)
        for term in self.feature_terms:
            loss = loss + term.loss()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    # -- the loop ---------------------------------------------------------------------------------
    def fit(self) -> DistillResult:
        started = time.perf_counter()
        total_steps = self.rounds * max(1, self.student_steps)
        step, rounds_done, synthesized = 0, 0, 0
        loss_sum = torch.zeros((), device=self.device)
        loss_count = 0
        last_good = None
        metrics: dict[str, float] = {}
        stopped_by = "rounds"
        self.student.train()
        bar = tqdm(total=total_steps, desc="distill", disable=not (self.progress and self.logger.enabled),
                   dynamic_ncols=True, leave=False)
        try:
            for round_index in range(self.rounds):
                if self.time_budget_s and time.perf_counter() - started >= self.time_budget_s:
                    stopped_by = "time budget"
                    break
                batch = self.synthesizer.synthesize()
                synthesized += len(batch)
                self.pool.add(batch.images)
                if round_index == 0 and self.grid_path is not None:
                    self._save_grid(batch.images)
                for _ in range(self.student_steps):
                    self._set_lr(self._progress(step, total_steps, started))
                    loss_sum += self._student_step(batch.images)
                    loss_count += 1
                    step += 1
                    bar.update(1)
                    if step % self.log_every == 0:
                        mean_loss, synth = self._read_back(loss_sum / loss_count)
                        self._check_finite(mean_loss, step, last_good)
                        bar.set_postfix(loss=f"{mean_loss:.4f}", **({"acc": f"{metrics['student_accuracy']:.3f}"} if metrics else {}))
                        self.logger.scalars(step, {"train/kd_loss": mean_loss, "train/lr": self.optimizer.param_groups[0]["lr"],
                                                   **synth})
                        loss_sum.zero_()
                        loss_count = 0
                    if self.time_budget_s and step % 10 == 0 and time.perf_counter() - started >= self.time_budget_s:
                        break
                rounds_done += 1
                if rounds_done % self.eval_every == 0:
                    metrics = self._evaluate_and_save(rounds_done, step, synthesized, started)
                    last_good = self.checkpoint_path
            if rounds_done % self.eval_every != 0 or not metrics:
                metrics = self._evaluate_and_save(rounds_done, step, synthesized, started)
        finally:
            bar.close()
        if self.grid_path is not None and len(self.pool):
            self._save_grid(self.pool.images()[-64:].float().div(255))
        return DistillResult(
            student_accuracy=metrics.get("student_accuracy"),
            teacher_accuracy=metrics.get("teacher_accuracy"),
            agreement=metrics.get("agreement"),
            rounds=rounds_done,
            student_steps=step,
            images_synthesized=synthesized,
            wall_time_s=time.perf_counter() - started,
            stopped_by=stopped_by,
        )

    def _read_back(self, mean_loss: torch.Tensor) -> tuple[float, dict[str, float]]:
        """The mean student loss and the synthesizer's last loss terms, in one device-to-host copy."""
        losses = getattr(self.synthesizer, "last_losses", {}) or {}
        values = torch.stack([mean_loss.float(), *(v.float().to(mean_loss.device) for v in losses.values())]).tolist()
        return values[0], {f"synth/{k}": v for k, v in zip(losses, values[1:])}

    def _check_finite(self, value: float, step: int, last_good) -> None:
        if not math.isfinite(value):
            kept = f" The last good student is kept at {last_good}." if last_good else " No student checkpoint had been written yet."
            raise DatafreeError(
                f"the distillation loss became {value} by student step {step} (teacher or student logits are not finite on the "
                f"synthetic inputs).{kept} Lower trainer.lr or the synthesizer's learning rate, or check the teacher on real inputs."
            )

    def _evaluate_and_save(self, rounds_done: int, step: int, synthesized: int, started: float) -> dict[str, float]:
        row: dict[str, float] = {"round": rounds_done, "step": step, "images": synthesized,
                                 "time_s": round(time.perf_counter() - started, 2)}
        if self.test_batches is not None:
            result = evaluate(self.student, self.test_batches, self.device, self.amp, reference=self.teacher)
            row.update(student_accuracy=result["accuracy"], teacher_accuracy=result["reference_accuracy"],
                       agreement=result["agreement"])
            self.logger.scalars(step, {"eval/student_accuracy": result["accuracy"], "eval/agreement": result["agreement"]})
            _, synth_losses = self._read_back(torch.zeros((), device=self.device))
            synth = " ".join(f"{k} {v:.3g}" for k, v in synth_losses.items())
            self.logger.info(
                f"round {rounds_done} step {step}: student {result['accuracy']:.4f} teacher {result['reference_accuracy']:.4f} "
                f"agreement {result['agreement']:.4f} ({row['time_s']:.0f}s){' | ' + synth if synth else ''}"
            )
        self.logger.summary(row)
        if self.checkpoint_path is not None and self.student_info is not None and self.logger.enabled:
            info = dataclasses.replace(self.student_info, test_accuracy=row.get("student_accuracy"))
            save_classifier(self.checkpoint_path, self.student, info)
        return row

    def _save_grid(self, images: torch.Tensor) -> None:
        if not self.logger.enabled:
            return
        from torchvision.utils import save_image

        self.grid_path.parent.mkdir(parents=True, exist_ok=True)
        save_image(images[:64].float().cpu(), str(self.grid_path), nrow=8)
