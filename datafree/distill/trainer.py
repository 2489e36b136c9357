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
from datafree.utils.dist import is_main_process
from datafree.utils.logging import RunLogger
from datafree.utils.nonfinite import NonFiniteGuard, fused_adam, fused_sgd
from datafree.utils.run_state import StateFiles, rng_state, set_rng_state
from datafree.utils.sample_grid import save_sample_grid
from datafree.utils.signals import StopRequest, interrupted


# The newest pool images the final sample grid sorts into rows by class.
GRID_IMAGES = 512


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
    skipped_steps: int = 0  # student steps skipped for a non-finite loss or gradient


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
        checkpoint_every: int = 1000,
        max_nonfinite: int = 20,
        halve_synthesis_on_oom: bool = False,
        state: StateFiles | None = None,
    ):
        if rounds < 1 or student_steps < 0 or batch_size < 1:
            raise DatafreeError(
                f"trainer needs rounds >= 1, student_steps >= 0, batch_size >= 1 (got {rounds}, {student_steps}, {batch_size})."
            )
        if not 0.0 <= replay <= 1.0:
            raise DatafreeError(f"trainer.replay is the replayed fraction of each student batch: give a value in [0, 1], not {replay}.")
        if time_budget_s is not None and time_budget_s <= 0:
            raise DatafreeError(f"trainer.time_budget_s must be positive or null, got {time_budget_s}.")
        if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) or checkpoint_every < 0:
            raise DatafreeError(f"trainer.checkpoint_every counts student steps between full-state checkpoints: give an "
                                f"int >= 0 (0 = only on a signal and at the end), not {checkpoint_every!r}.")
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
        self.checkpoint_every, self.halve_synthesis_on_oom, self.state = checkpoint_every, bool(halve_synthesis_on_oom), state
        self.pool = SyntheticPool(pool_capacity, tuple(input_size), device)
        # Feature terms (ZSKT attention, FitNets hints) over named layers; hint adapters train with the student.
        self.feature_terms = build_feature_terms(teacher, student, input_size, device, attention=attention, hint=hint)
        params = [p for p in student.parameters() if p.requires_grad]
        params += [p for term in self.feature_terms for p in term.parameters()]
        if optimizer == "sgd":
            self.optimizer = fused_sgd(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=momentum > 0)
        elif optimizer == "adam":
            self.optimizer = fused_adam(params, lr=lr, weight_decay=weight_decay)
        else:
            raise DatafreeError(f"unknown trainer.optimizer {optimizer!r}: choose 'sgd' or 'adam'.")
        self.base_lr = float(lr)
        self.loss_name = getattr(self.loss, "name", type(self.loss).__name__.lower())
        self.guard = NonFiniteGuard(device, (self.loss_name, *(term.kind for term in self.feature_terms)),
                                    max_nonfinite, what="student step")
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
        terms = {self.loss_name: loss}
        for term in self.feature_terms:
            terms[term.kind] = term.loss()
            loss = loss + terms[term.kind]
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.guard.step(self.optimizer, loss, terms)  # skipped on the device when not finite
        return loss.detach()

    # -- the loop ---------------------------------------------------------------------------------
    def fit(self) -> DistillResult:
        started = time.perf_counter()
        total_steps = self.rounds * max(1, self.student_steps)
        step, rounds_done, synthesized = 0, 0, 0
        loss_sum = torch.zeros((), device=self.device)
        loss_count = 0
        skipped = 0  # student steps skipped so far, as of the last read-back
        last_good = None
        metrics: dict[str, float] = {}
        best = -math.inf
        stopped_by = "rounds"
        # Where the run continues: the round in progress, the student steps done in it and its fresh batch.
        first_round, first_step, fresh = 0, 0, None
        saved = self.state.load() if self.state is not None else None
        if saved is not None:
            first_round, first_step, fresh = saved["round"], saved["round_step"], saved["fresh"]
            step, rounds_done, synthesized = saved["step"], saved["rounds_done"], saved["synthesized"]
            loss_count, skipped, last_good = saved["loss_count"], saved["skipped"], saved["last_good"]
            metrics, best = dict(saved["metrics"]), saved["best"]
            loss_sum = saved["loss_sum"].to(self.device)
            fresh = None if fresh is None else fresh.to(self.device)
            started -= saved["elapsed_s"]
            self._restore(saved)
            self.logger.info(f"resumed from {self.state.last_saved}: in round {first_round + 1}, after student step {step}")

        def save_state(round_index: int, round_step: int, images: torch.Tensor | None, is_best: bool = False,
                       force: bool = False):
            """The full state at a step boundary: what is needed to continue exactly from here.

            Saving syncs anyway, so the non-finite streak is free to read here: a state taken in the
            middle of a run of skipped steps is not written over the last good one (unless ``force``).
            """
            if self.state is None:
                return None
            if not force and int(self.guard.streak.item()):
                self.logger.info(f"checkpoint at student step {step} skipped: the last steps were not finite")
                return None
            return self.state.save({
                "kind": "distill", "round": round_index, "round_step": round_step, "fresh": images,
                "step": step, "rounds_done": rounds_done, "synthesized": synthesized,
                "loss_sum": loss_sum, "loss_count": loss_count, "skipped": skipped,
                "last_good": None if last_good is None else str(last_good), "metrics": metrics, "best": best,
                "elapsed_s": time.perf_counter() - started, **self._state_dicts(),
            }, best=is_best)

        def stop_here(stop: StopRequest, round_index: int, round_step: int, images) -> None:
            path = save_state(round_index, round_step, images, force=True)
            raise interrupted(stop.signum, f"student step {step} (round {round_index + 1})", path)

        self.student.train()
        bar = tqdm(total=total_steps, initial=step, desc="distill", disable=not (self.progress and is_main_process()),
                   dynamic_ncols=True, leave=False)
        try:
            with StopRequest() as stop:
                for round_index in range(first_round, self.rounds):
                    if round_index == first_round and fresh is not None:
                        images, start = fresh, first_step  # the round that was in progress
                    else:
                        if self.time_budget_s and time.perf_counter() - started >= self.time_budget_s:
                            stopped_by = "time budget"
                            break
                        batch = self._synthesize()
                        synthesized += len(batch)
                        self.pool.add(batch.images)
                        if round_index == 0 and self.grid_path is not None:
                            self._save_grid(batch.images)
                        images, start = batch.images, 0
                    for round_step in range(start, self.student_steps):
                        self._set_lr(self._progress(step, total_steps, started))
                        loss_sum += self._student_update(images).nan_to_num(0.0, 0.0, 0.0)
                        loss_count += 1
                        step += 1
                        bar.update(1)
                        if step % self.log_every == 0:
                            values, synth = self._read_back(loss_sum)
                            new_skips = self.guard.check(values[1:], step, self._last_good(last_good), self._NAN_HINT,
                                                         {k[len("synth/"):]: v for k, v in synth.items()}) - skipped
                            mean_loss = values[0] / max(1, loss_count - new_skips)
                            skipped += new_skips
                            bar.set_postfix(loss=f"{mean_loss:.4f}", **({"acc": f"{metrics['student_accuracy']:.3f}"} if metrics else {}))
                            self.logger.scalars(step, {"train/kd_loss": mean_loss, "train/lr": self.optimizer.param_groups[0]["lr"],
                                                       "train/skipped_steps": skipped, **synth})
                            loss_sum.zero_()
                            loss_count = 0
                        if stop.requested:
                            stop_here(stop, round_index, round_step + 1, images)
                        if self.checkpoint_every and step % self.checkpoint_every == 0:
                            save_state(round_index, round_step + 1, images)
                        if self.time_budget_s and step % 10 == 0 and time.perf_counter() - started >= self.time_budget_s:
                            break
                    rounds_done += 1
                    if rounds_done % self.eval_every == 0:
                        metrics = self._evaluate_and_save(rounds_done, step, synthesized, started)
                        last_good = self.checkpoint_path
                        accuracy = metrics.get("student_accuracy")
                        if accuracy is not None and accuracy > best and self.checkpoint_every and self.state is not None:
                            best = accuracy
                            save_state(round_index + 1, 0, None, is_best=True)
                    if stop.requested:
                        stop_here(stop, round_index + 1, 0, None)
                if rounds_done % self.eval_every != 0 or not metrics:
                    metrics = self._evaluate_and_save(rounds_done, step, synthesized, started)
                skipped = int(self.guard.skipped.item())
                save_state(rounds_done, 0, None, force=True)  # resuming a finished run re-evaluates; more rounds continue it
        finally:
            bar.close()
        if self.grid_path is not None and len(self.pool):
            self._save_grid(self.pool.images()[-GRID_IMAGES:].float().div(255))
        return DistillResult(
            student_accuracy=metrics.get("student_accuracy"),
            teacher_accuracy=metrics.get("teacher_accuracy"),
            agreement=metrics.get("agreement"),
            rounds=rounds_done,
            student_steps=step,
            images_synthesized=synthesized,
            wall_time_s=time.perf_counter() - started,
            stopped_by=stopped_by,
            skipped_steps=skipped,
        )

    _NAN_HINT = "Lower trainer.lr or the synthesizer's learning rate, or check the teacher on real inputs."

    def _last_good(self, student_path) -> str | None:
        state = self.state.last_saved if self.state is not None else None
        if state and student_path:
            return f"{state} (student weights: {student_path})"
        return str(state or student_path) if (state or student_path) else None

    # -- state ------------------------------------------------------------------------------------
    def _state_dicts(self) -> dict:
        return {"student": self.student.state_dict(), "optimizer": self.optimizer.state_dict(),
                "synthesizer": self.synthesizer.state_dict(), "pool": self.pool.state_dict(),
                "guard": self.guard.state_dict(), "rng": rng_state(),
                # Hint adapters train with the student; their weights are not in the student's state dict.
                "features": [term.state_dict() for term in self.feature_terms]}

    def _restore(self, saved: dict) -> None:
        self.student.load_state_dict(saved["student"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.synthesizer.load_state_dict(saved["synthesizer"])
        self.pool.load_state_dict(saved["pool"])
        self.guard.load_state_dict(saved["guard"])
        for term, term_state in zip(self.feature_terms, saved.get("features", [])):
            term.load_state_dict(term_state)
        set_rng_state(saved["rng"])  # last: nothing after it may draw random numbers

    # -- out of memory ----------------------------------------------------------------------------
    def _synthesize(self):
        while True:
            try:
                return self.synthesizer.synthesize()
            except torch.OutOfMemoryError:
                size = getattr(self.synthesizer, "batch_size", None)
                if not (self.halve_synthesis_on_oom and size and size > 1):
                    raise DatafreeError(
                        f"out of GPU memory while synthesizing a batch of synthesizer.batch_size={size}: lower it "
                        f"(e.g. synthesizer.batch_size={max(1, (size or 2) // 2)}), or set "
                        "trainer.halve_synthesis_on_oom=true to halve it automatically."
                    ) from None
            # Outside the except block, so that the failed attempt's tensors can be freed first.
            self.synthesizer.batch_size = size // 2
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            self.logger.info(f"out of GPU memory at synthesizer.batch_size={size}: retrying with {size // 2}")

    def _student_update(self, fresh: torch.Tensor) -> torch.Tensor:
        try:
            return self._student_step(fresh)
        except torch.OutOfMemoryError:
            raise DatafreeError(
                f"out of GPU memory in a student step with trainer.batch_size={self.batch_size}: lower it "
                f"(e.g. trainer.batch_size={max(1, self.batch_size // 2)})."
            ) from None

    def _read_back(self, loss_sum: torch.Tensor) -> tuple[list[float], dict[str, float]]:
        """The loss sum, the guard's counters and the synthesizer's last loss terms, in one device-to-host copy."""
        losses = dict(getattr(self.synthesizer, "last_losses", {}) or {})
        if getattr(self.synthesizer, "skipped_steps", None) is not None:
            losses["skipped_steps"] = self.synthesizer.skipped_steps
        own = [loss_sum.float(), *self.guard.tensors()]
        values = torch.stack([*own, *(v.float().to(loss_sum.device) for v in losses.values())]).tolist()
        return values[: len(own)], {f"synth/{k}": v for k, v in zip(losses, values[len(own):])}

    def _evaluate_and_save(self, rounds_done: int, step: int, synthesized: int, started: float) -> dict[str, float]:
        row: dict[str, float] = {"round": rounds_done, "step": step, "images": synthesized,
                                 "time_s": round(time.perf_counter() - started, 2),
                                 "skipped_steps": int(self.guard.skipped.item())}  # evaluation syncs anyway
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
        """The samples in rows by the class the teacher gives them."""
        if not self.logger.enabled:
            return
        with torch.no_grad(), autocast(self.device, self.amp):
            logits = self.teacher(images).float()
        classes = self.student_info.classes if self.student_info is not None else ()
        save_sample_grid(images, logits.argmax(1), self.grid_path, classes, num_classes=logits.shape[1])
