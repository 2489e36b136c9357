"""The distillation loop: synthesize a batch, replay, train the student, evaluate.

One round = ``synthesizer.synthesize()`` (its own optimisation), the batch goes
into the replay pool, then ``student_steps`` student updates on batches that
mix fresh images with replayed ones. Everything stays on the device; losses
are read back to the host only every ``log_every`` steps and at evaluations.

Under torchrun each rank runs this loop with its own synthesizer draws and replay pool;
the student trains as one model through DDP (batch_size images per rank), and every other
module the student step trains (``step_modules``) has its gradients averaged over the ranks.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from datafree.distill.losses import KDLoss
from datafree.distill.objectives import Objectives
from datafree.distill.pool import SyntheticPool
from datafree.distill.settings import Optimiser, Outputs, Reliability, Schedule, Objective, Terms, group_options
from datafree.errors import DatafreeError
from datafree.evaluate import evaluate
from datafree.synthesizers.augment import Augment
from datafree.synthesizers.base import Synthesizer
from datafree.teachers import save_classifier
from datafree.utils import dist
from datafree.utils.device import autocast
from datafree.utils.dist import is_main_process
from datafree.utils.graphs import CapturedStep, set_lr, tensor_lr
from datafree.utils.logging import RunLogger
from datafree.utils.loop import Loop, Snapshot, check_loop_settings
from datafree.utils.nonfinite import NonFiniteGuard, fused_optimizer
from datafree.utils.sample_grid import save_sample_grid


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
    """The loop, given its settings in groups (:mod:`datafree.distill.settings`).

    Recipes and the Python API give the settings as flat keys: :meth:`from_options`.
    """

    def __init__(
        self,
        teacher: nn.Module,
        student: nn.Module,
        synthesizer: Synthesizer,
        *,
        device: torch.device,
        num_classes: int,
        input_size: tuple[int, int, int],
        amp: bool = True,
        schedule: Schedule | None = None,
        objective: Objective | None = None,
        terms: Terms | None = None,
        optimiser: Optimiser | None = None,
        outputs: Outputs | None = None,
        reliability: Reliability | None = None,
    ):
        schedule, step, optimiser = schedule or Schedule(), objective or Objective(), optimiser or Optimiser()
        outputs, reliability = outputs or Outputs(), reliability or Reliability()
        if schedule.rounds < 1 or schedule.student_steps < 0 or step.batch_size < 1:
            raise DatafreeError(
                f"trainer needs rounds >= 1, student_steps >= 0, batch_size >= 1 (got {schedule.rounds}, "
                f"{schedule.student_steps}, {step.batch_size})."
            )
        if not 0.0 <= step.replay <= 1.0:
            raise DatafreeError(f"trainer.replay is the replayed fraction of each student batch: give a value in [0, 1], "
                                f"not {step.replay}.")
        check_loop_settings("trainer.", "student step", time_budget_s=schedule.time_budget_s,
                            checkpoint_every=reliability.checkpoint_every)
        if step.sync_batchnorm:
            student = dist.sync_batchnorm(student, device, "trainer.sync_batchnorm")
        self.teacher, self.student, self.synthesizer = teacher, student, synthesizer
        self.device, self.amp = device, amp
        self.schedule = dataclasses.replace(
            schedule, rounds=int(schedule.rounds), student_steps=int(schedule.student_steps),
            eval_every=max(1, int(schedule.eval_every)), log_every=max(1, int(schedule.log_every)),
        )
        self.objective = dataclasses.replace(step, batch_size=int(step.batch_size), replay=float(step.replay))
        self.outputs = dataclasses.replace(
            outputs, logger=outputs.logger or RunLogger(".", tensorboard=False, enabled=False),
            checkpoint_path=Path(outputs.checkpoint_path) if outputs.checkpoint_path else None,
            grid_path=Path(outputs.grid_path) if outputs.grid_path else None,
        )
        self.reliability = dataclasses.replace(reliability, halve_synthesis_on_oom=bool(reliability.halve_synthesis_on_oom))
        self.loss = step.loss or KDLoss()
        self.augment = (step.augment or Augment(jitter=2, flip=True)).to(device)
        # With replay 0 nothing is ever drawn from the pool: keep none (no memory, nothing in every state file).
        self.pool = SyntheticPool(step.pool_capacity if step.replay > 0 else 0, tuple(input_size), device)
        # Feature, relation and adversarial terms beside the KD loss; their adapters train with the student.
        self.objectives = Objectives(teacher, student, num_classes=num_classes, input_size=tuple(input_size),
                                     device=device, capturable=bool(step.cuda_graphs) and device.type == "cuda",
                                     max_nonfinite=reliability.max_nonfinite,
                                     **dataclasses.asdict(terms or Terms()))
        self.feature_terms = self.objectives.features
        # What the student step trains besides the student (hint adapters, the discriminator's width adapter):
        # their parameters are in the student's optimiser, their state in every full state, and under torchrun
        # they start as rank 0's and their gradients are averaged over the ranks. (The discriminator itself
        # learns on each rank's own batches: docs/distributed.md.)
        self.step_modules: list[nn.Module] = self.objectives.student_modules()
        # The student as the step runs it: under torchrun a DDP wrapper (rank 0's weights everywhere,
        # gradients averaged in the backward pass); evaluation, saves and the synthesizer use the student itself.
        self._step_student = dist.data_parallel(student, device)
        for module in self.step_modules:
            dist.broadcast_module(module)
        params = [p for p in student.parameters() if p.requires_grad]
        params += self.objectives.student_parameters()
        self._params, self.optimiser = params, optimiser
        self.optimizer = fused_optimizer(optimiser.optimizer, params, lr=optimiser.lr, momentum=optimiser.momentum,
                                         weight_decay=optimiser.weight_decay)
        self.base_lr = float(optimiser.lr)
        self._captured = self._capture_plan(step.cuda_graphs)
        self.loss_name = getattr(self.loss, "name", type(self.loss).__name__.lower())
        self.guard = NonFiniteGuard(device, (self.loss_name, *self.objectives.names), reliability.max_nonfinite,
                                    what="student step", shared=True)
        self.logged = self.objectives.logged(self.loss_name)  # what each student step returns and the loop sums
        if self.objectives.names:
            self.outputs.logger.info(self.objectives.describe(self.loss_name))
        synthesizer.bind(teacher, student, num_classes, tuple(input_size), device)

    @classmethod
    def from_options(cls, teacher: nn.Module, student: nn.Module, synthesizer: Synthesizer, *, device: torch.device,
                     num_classes: int, input_size: tuple[int, int, int], amp: bool = True, **options) -> "Distiller":
        """The Distiller from flat options, the keys recipes and ``distill_student`` take (``lr``, ``rounds``, ...)."""
        return cls(teacher, student, synthesizer, device=device, num_classes=num_classes, input_size=input_size, amp=amp,
                   **group_options(options))

    # -- schedule -------------------------------------------------------------------------
    def _set_lr(self, progress: float) -> None:
        factor = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        set_lr(self.optimizer, self.base_lr * factor)
        self.synthesizer.follow_schedule(factor)

    # -- the student step as one CUDA graph -----------------------------------------------------------------
    def _capture_plan(self, wanted: bool) -> CapturedStep | None:
        """A captured student step when asked for, on a GPU, and when every part of the step can be captured."""
        if not wanted or self.device.type != "cuda":
            return None
        blockers = []
        if not self.augment.capturable:
            blockers.append("the student augmentation has extra (kornia) modules")
        blockers += self.objectives.capture_blockers()
        if not self.synthesizer.sample_capturable:
            blockers.append(f"{type(self.synthesizer).__name__}.sample changes generator between rounds")
        if dist.is_distributed():
            blockers.append(f"the run has {dist.world_size()} processes (DDP's gradient all-reduce is not captured)")
        if blockers:
            self.outputs.logger.info(f"trainer.cuda_graphs: the student step runs eagerly because {'; '.join(blockers)}")
            return None
        tensor_lr(self.optimizer)  # the captured step reads the learning rate from the device
        self._fresh: torch.Tensor | None = None  # the round's images, copied in place for the captured step
        self._fresh_from: torch.Tensor | None = None
        return CapturedStep(lambda: self._student_step(self._fresh), self.device)

    def _student_update(self, fresh: torch.Tensor) -> torch.Tensor:
        try:
            if self._captured is None:
                return self._student_step(fresh)
            if self._fresh is None or self._fresh.shape != fresh.shape:
                self._fresh = torch.empty_like(fresh)
                self._captured.reset()  # a new buffer (e.g. a halved synthesis batch): capture again
            if self._fresh_from is not fresh:  # once per round
                self._fresh.copy_(fresh)
                self._fresh_from = fresh
            return self._captured()
        except torch.OutOfMemoryError:
            raise DatafreeError(
                f"out of GPU memory in a student step with trainer.batch_size={self.objective.batch_size}: lower it "
                f"(e.g. trainer.batch_size={max(1, self.objective.batch_size // 2)})."
            ) from None

    # -- one student update ---------------------------------------------------------------------
    def _student_batch(self, fresh: torch.Tensor) -> torch.Tensor:
        n_replay = int(round(self.objective.batch_size * self.objective.replay)) if len(self.pool) else 0
        n_fresh = self.objective.batch_size - n_replay
        sampled = self.synthesizer.sample(n_fresh) if n_fresh else None
        if sampled is None and n_fresh:
            sampled = fresh[torch.randint(fresh.shape[0], (n_fresh,), device=fresh.device)]
        parts = [p for p in (sampled, self.pool.sample(n_replay) if n_replay else None) if p is not None]
        return torch.cat(parts) if len(parts) > 1 else parts[0]

    def _student_step(self, fresh: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            inputs = self.augment(self._student_batch(fresh))
            if self.device.type == "cuda":
                inputs = inputs.contiguous(memory_format=torch.channels_last)  # the networks' layout
            with autocast(self.device, self.amp), self.objectives.taps("teacher"):
                teacher_logits = self.teacher(inputs).float()
        with autocast(self.device, self.amp), self.objectives.taps("student"):
            student_logits = self._step_student(inputs).float()
        loss, terms = self.objectives.student_loss(self.loss_name, self.loss(student_logits, teacher_logits),
                                                   student_logits, teacher_logits)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        dist.average_gradients(p.grad for module in self.step_modules for p in module.parameters())
        if self.optimiser.clip_grad_norm:  # ZSKT clips at 5; a device-side rescale, no host sync
            torch.nn.utils.clip_grad_norm_(self._params, self.optimiser.clip_grad_norm, foreach=True)
        self.guard.step(self.optimizer, loss, terms)  # skipped on the device when not finite
        return self.objectives.step_values(loss, terms)

    # -- the loop ---------------------------------------------------------------------------------
    def fit(self) -> DistillResult:
        schedule, outputs, logger = self.schedule, self.outputs, self.outputs.logger
        loop = Loop("distill", self.reliability.state, self.guard, logger, hint=self._NAN_HINT,
                    time_budget_s=schedule.time_budget_s, checkpoint_every=self.reliability.checkpoint_every)
        total_steps = schedule.rounds * max(1, schedule.student_steps)
        step, rounds_done, synthesized = 0, 0, 0
        loss_sum = torch.zeros(len(self.logged), device=self.device)  # what the steps return, summed until a read-back
        loss_count = 0
        terms: dict[str, float] = {}  # the terms' means at the last read-back, for summary.csv
        skipped = 0  # student steps skipped so far, as of the last read-back
        last_good = None  # student.pt, once written
        metrics: dict[str, float] = {}
        stopped_by = "rounds"
        # Where the run continues: the round in progress, the student steps done in it and its fresh batch.
        first_round, first_step, fresh = 0, 0, None
        saved = loop.resume(self._restore)
        if saved is not None:
            first_round, first_step, fresh = saved["round"], saved["round_step"], saved["fresh"]
            step, rounds_done, synthesized = saved["step"], saved["rounds_done"], saved["synthesized"]
            loss_count, skipped, last_good = saved["loss_count"], saved["skipped"], saved["last_good"]
            metrics, terms = dict(saved["metrics"]), dict(saved.get("terms", {}))
            loss_sum = saved["loss_sum"].to(self.device)
            fresh = None if fresh is None else fresh.to(self.device)
            logger.info(f"resumed from {loop.last_good()}: in round {first_round + 1}, after student step {step}")

        def snapshot(round_index: int, round_step: int, images: torch.Tensor | None) -> Snapshot:
            """The state at a step boundary: the round, the steps done in it and its fresh batch, and the counters."""
            return lambda: {
                "round": round_index, "round_step": round_step, "fresh": images,
                "step": step, "rounds_done": rounds_done, "synthesized": synthesized,
                "loss_sum": loss_sum, "loss_count": loss_count, "skipped": skipped,
                "last_good": None if last_good is None else str(last_good), "metrics": metrics, "terms": terms,
                **self._state_dicts(),
            }

        self.student.train()
        bar = tqdm(total=total_steps, initial=step, desc="distill", disable=not (outputs.progress and is_main_process()),
                   dynamic_ncols=True, leave=False)
        try:
            with loop:
                for round_index in range(first_round, schedule.rounds):
                    if round_index == first_round and fresh is not None:
                        images, start = fresh, first_step  # the round that was in progress
                    else:
                        if loop.spent():
                            stopped_by = "time budget"
                            break
                        batch = self._synthesize()
                        synthesized += len(batch)
                        self.pool.add(batch.images)
                        if round_index == 0 and outputs.grid_path is not None:
                            self._save_grid(batch.images)
                        images, start = batch.images, 0
                    for round_step in range(start, schedule.student_steps):
                        self._set_lr(loop.fraction(step, total_steps))
                        loss_sum += self._student_update(images).nan_to_num(0.0, 0.0, 0.0)
                        loss_count += 1
                        step += 1
                        bar.update(1)
                        if step % schedule.log_every == 0:
                            sums, guard_values, counters, synth = self._read_back(loss_sum)
                            new_skips = loop.check(step, guard_values, {k[len("synth/"):]: v for k, v in synth.items()},
                                                   self._last_good(loop, last_good)) - skipped
                            means = [value / max(1, loss_count - new_skips) for value in sums]
                            mean_loss = means[0]
                            terms = {**dict(zip(self.logged[1:], means[1:])), **counters}
                            skipped += new_skips
                            bar.set_postfix(loss=f"{mean_loss:.4f}", **({"acc": f"{metrics['student_accuracy']:.3f}"} if "student_accuracy" in metrics else {}))
                            logger.scalars(step, {"train/kd_loss": mean_loss, "train/lr": self.optimizer.param_groups[0]["lr"],
                                                  "train/skipped_steps": skipped,
                                                  **{f"train/{name}": value for name, value in terms.items()}, **synth})
                            loss_sum.zero_()
                            loss_count = 0
                        loop.step_done(step, f"student step {step} (round {round_index + 1})",
                                       snapshot(round_index, round_step + 1, images))
                        if step % 10 == 0 and loop.spent():
                            break
                    rounds_done += 1
                    if rounds_done % schedule.eval_every == 0:
                        metrics = self._evaluate_and_save(rounds_done, step, synthesized, loop.elapsed(), terms)
                        last_good = outputs.checkpoint_path
                        loop.save_if_best(metrics.get("student_accuracy"), snapshot(round_index + 1, 0, None))
                    loop.stop_point(f"student step {step} (end of round {round_index + 1})",
                                    snapshot(round_index + 1, 0, None))
                if rounds_done % schedule.eval_every != 0 or not metrics:
                    metrics = self._evaluate_and_save(rounds_done, step, synthesized, loop.elapsed(), terms)
                skipped = int(self.guard.skipped.item())
                # Resuming a finished run re-evaluates; more rounds continue it.
                loop.save(snapshot(rounds_done, 0, None), force=True)
        finally:
            bar.close()
        if outputs.grid_path is not None and len(self.pool):
            self._save_grid(self.pool.images()[-GRID_IMAGES:].float().div(255))
        return DistillResult(
            student_accuracy=metrics.get("student_accuracy"),
            teacher_accuracy=metrics.get("teacher_accuracy"),
            agreement=metrics.get("agreement"),
            rounds=rounds_done,
            student_steps=step,
            images_synthesized=dist.total(synthesized),
            wall_time_s=loop.elapsed(),
            stopped_by=stopped_by,
            skipped_steps=skipped,
        )

    _NAN_HINT = "Lower trainer.lr or the synthesizer's learning rate, or check the teacher on real inputs."

    @staticmethod
    def _last_good(loop: Loop, student_path) -> str | None:
        state = loop.last_good()
        if state and student_path:
            return f"{state} (student weights: {student_path})"
        return state or (str(student_path) if student_path else None)

    # -- state ------------------------------------------------------------------------------------
    def _state_dicts(self) -> dict:
        """The Distiller's parts in a state; the loop adds the guard, the RNG states and the clock."""
        return {"student": self.student.state_dict(), "optimizer": self.optimizer.state_dict(),
                "synthesizer": self.synthesizer.state_dict(), "pool": self.pool.state_dict(),
                # Hint adapters (features) and the discriminator with its optimiser: not in the student's state dict.
                **self.objectives.state_dict()}

    def _restore(self, saved: dict) -> None:
        self.student.load_state_dict(saved["student"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.synthesizer.load_state_dict(saved["synthesizer"])
        self.pool.load_state_dict(saved["pool"])
        self.objectives.load_state_dict(saved)

    # -- out of memory ----------------------------------------------------------------------------
    def _synthesize(self):
        while True:
            try:
                return self.synthesizer.synthesize()
            except torch.OutOfMemoryError:
                size = getattr(self.synthesizer, "batch_size", None)
                if not (self.reliability.halve_synthesis_on_oom and size and size > 1):
                    raise DatafreeError(
                        f"out of GPU memory while synthesizing a batch of synthesizer.batch_size={size}: lower it "
                        f"(e.g. synthesizer.batch_size={max(1, (size or 2) // 2)}), or set "
                        "trainer.halve_synthesis_on_oom=true to halve it automatically."
                    ) from None
            # Outside the except block, so that the failed attempt's tensors can be freed first.
            self.synthesizer.batch_size = size // 2
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            self.outputs.logger.info(f"out of GPU memory at synthesizer.batch_size={size}: retrying with {size // 2}")


    def _read_back(self, loss_sum: torch.Tensor) -> tuple[list[float], list[float], dict[str, float], dict[str, float]]:
        """In one device-to-host copy: the step sums (as :attr:`logged`), the guard's counters, the terms' counters
        (the discriminator's skipped steps) and the synthesizer's last loss terms (``synth/...``)."""
        losses = dict(getattr(self.synthesizer, "last_losses", {}) or {})
        if getattr(self.synthesizer, "skipped_steps", None) is not None:
            losses["skipped_steps"] = self.synthesizer.skipped_steps
        counters = self.objectives.tensors()
        guard = self.guard.tensors()
        parts = [*dist.mean(loss_sum.float()).unbind(),  # the losses over every rank's batches
                  *guard, *counters.values(), *losses.values()]
        values = torch.stack([v.float().to(loss_sum.device).reshape(()) for v in parts]).tolist()
        n, g, c = len(loss_sum), len(guard), len(counters)
        return (values[:n], values[n:n + g], dict(zip(counters, values[n + g:n + g + c])),
                {f"synth/{k}": v for k, v in zip(losses, values[n + g + c:])})

    def _evaluate_and_save(self, rounds_done: int, step: int, synthesized: int, elapsed_s: float,
                           terms: dict[str, float] | None = None) -> dict[str, float]:
        """Evaluate, write a summary.csv row (with ``terms``: the loss terms' means at the last read-back) and student.pt."""
        outputs, logger = self.outputs, self.outputs.logger
        row: dict[str, float] = {"round": rounds_done, "step": step, "images": dist.total(synthesized),  # all ranks'
                                 "time_s": round(elapsed_s, 2),
                                 "skipped_steps": int(self.guard.skipped.item())}  # evaluation syncs anyway
        if outputs.test_batches is not None:
            result = evaluate(self.student, outputs.test_batches, self.device, self.amp, reference=self.teacher)
            row.update(student_accuracy=result["accuracy"], teacher_accuracy=result["reference_accuracy"],
                       agreement=result["agreement"])
            logger.scalars(step, {"eval/student_accuracy": result["accuracy"], "eval/agreement": result["agreement"]})
            *_, synth_losses = self._read_back(torch.zeros(0, device=self.device))
            synth = " ".join(f"{k} {v:.3g}" for k, v in synth_losses.items())
            logger.info(
                f"round {rounds_done} step {step}: student {result['accuracy']:.4f} teacher {result['reference_accuracy']:.4f} "
                f"agreement {result['agreement']:.4f} ({row['time_s']:.0f}s){' | ' + synth if synth else ''}"
            )
        logger.summary({**row, **(terms or {})})
        if outputs.checkpoint_path is not None and outputs.student_info is not None and logger.enabled:
            info = dataclasses.replace(outputs.student_info, test_accuracy=row.get("student_accuracy"))
            save_classifier(outputs.checkpoint_path, self.student, info)
        return row

    def _save_grid(self, images: torch.Tensor) -> None:
        """The samples in rows by the class the teacher gives them."""
        if not self.outputs.logger.enabled:
            return
        with torch.no_grad(), autocast(self.device, self.amp):
            logits = self.teacher(images).float()
        info = self.outputs.student_info
        classes = info.classes if info is not None else ()
        save_sample_grid(images, logits.argmax(1), self.outputs.grid_path, classes, num_classes=logits.shape[1])
