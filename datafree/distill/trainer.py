"""The distillation loop: rounds of student steps on batches from a source, evaluation, full-state saves.

One round = the source's round of work (a synthesis round into the replay pool, or nothing for a
stored set), then ``student_steps`` student updates, each on ``source.next()``: the inputs and,
where the source has them, the teacher's stored logits; otherwise the teacher runs on the batch.
Everything stays on the device; losses are read back to the host only every ``log_every`` steps
and at evaluations. :mod:`datafree.distill.sources` holds the two sources.

Under torchrun each rank runs this loop with its own source (its own synthesizer draws and replay
pool, or its own order of a stored set); the student trains as one model through DDP
(batch_size images per rank), and every other module the student step trains (``step_modules``)
has its gradients averaged over the ranks.
"""
from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from datafree.distill.averaging import WeightAverage, reestimate_batchnorm
from datafree.distill.objectives import Objectives
from datafree.models.bn_momentum import set_bn_momentum
from datafree.ops.hooks import batchnorm_layers
from datafree.distill.preflight import check_host_memory, check_student_fits
from datafree.distill.settings import Outputs, TrainerSettings
from datafree.distill.sources import BatchSource, SynthesizerSource
from datafree.errors import DatafreeError
from datafree.evaluate import COLLAPSED_SHARE, answers_one_class, evaluate
from datafree.synthesizers.base import Synthesizer
from datafree.teachers import save_classifier
from datafree.utils import dist
from datafree.utils.device import autocast
from datafree.utils.dist import is_main_process
from datafree.utils.graphs import CapturedStep, set_lr, tensor_lr
from datafree.utils.logging import RunLogger
from datafree.utils.loop import Loop, check_loop_settings, lr_at
from datafree.utils.nonfinite import NonFiniteGuard, fused_optimizer, load_optimizer_state, weight_decay_groups
from datafree.utils.sample_grid import save_sample_grid


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
    epochs: int | None = None  # passes over a stored set started (offline distillation)
    unaveraged_accuracy: float | None = None  # with trainer.ema_decay: the weights themselves (student_accuracy: the average)
    # The replay pool (this process's): images it can hold, images it holds, and the device memory it took, all
    # of it from the start (the peak memory a run reports counts it, used or not).
    pool_capacity: int = 0
    pool_filled: int = 0
    pool_bytes: int = 0


@dataclasses.dataclass
class Progress:
    """Where the run is, and what its last read-back and evaluation said: what a full state holds besides the
    modules. ``round``/``round_step`` are the round in progress and the steps done in it."""

    round: int = 0
    round_step: int = 0
    step: int = 0
    rounds_done: int = 0
    loss_count: int = 0  # steps summed into the loss sums since the last read-back
    skipped: int = 0  # student steps skipped so far, as of the last read-back
    last_good: str | None = None  # student.pt, once written
    metrics: dict = dataclasses.field(default_factory=dict)  # the last evaluation's row
    terms: dict = dataclasses.field(default_factory=dict)  # the terms' means at the last read-back, for summary.csv


def calibration_seed(step: int) -> int:
    """The seed of the draws that re-estimate the average's statistics at ``step``: fixed by the step (a resumed run
    draws as the first did) and the rank (under torchrun each rank draws from its own pool)."""
    return step * 1_000_003 + dist.rank()


class Distiller:
    """The loop over any :class:`~datafree.distill.sources.BatchSource`; a synthesizer is wrapped in a
    :class:`~datafree.distill.sources.SynthesizerSource` with the settings' replay pool and augmentation.
    ``teacher`` may be None when the source gives the teacher's logits (a stored set).

    Recipes and the Python API give the settings as flat keys: :meth:`from_options`.
    """

    def __init__(self, teacher: nn.Module | None, student: nn.Module, source: BatchSource | Synthesizer,
                 settings: TrainerSettings, *, device: torch.device, num_classes: int, input_size: tuple[int, int, int],
                 amp: bool = True, outputs: Outputs | None = None, shared_batches: int = 1):
        check_loop_settings("trainer.", "student step", time_budget_s=settings.time_budget_s,
                            checkpoint_every=settings.checkpoint_every)
        if isinstance(source, Synthesizer):
            source = SynthesizerSource(source, replay=settings.replay, pool_capacity=settings.pool_capacity,
                                       augment=settings.augment, halve_on_oom=settings.halve_synthesis_on_oom)
        if settings.sync_batchnorm:
            student = dist.sync_batchnorm(student, device, "trainer.sync_batchnorm")
        outputs = outputs or Outputs()
        self.outputs = dataclasses.replace(
            outputs, logger=outputs.logger or RunLogger(".", tensorboard=False, enabled=False),
            checkpoint_path=Path(outputs.checkpoint_path) if outputs.checkpoint_path else None,
            grid_path=Path(outputs.grid_path) if outputs.grid_path else None,
        )
        # Before any capture: a CUDA graph holds the momentum it was captured with.
        note = set_bn_momentum(student, settings.bn_momentum)
        if note:
            self.outputs.logger.info(note)
        self.teacher, self.student, self.source, self.settings = teacher, student, source, settings
        self.device, self.amp, self.num_classes = device, amp, num_classes
        self.loss = settings.loss
        self.loss_name = getattr(self.loss, "name", type(self.loss).__name__.lower())
        # Feature, relation and adversarial terms beside the loss; their adapters train with the student.
        self.objectives = Objectives(teacher, student, num_classes=num_classes, input_size=tuple(input_size),
                                     device=device, capturable=settings.cuda_graphs and device.type == "cuda",
                                     max_nonfinite=settings.max_nonfinite, **settings.terms())
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
        self._params = [p for p in student.parameters() if p.requires_grad] + self.objectives.student_parameters()
        self.optimizer = fused_optimizer(settings.optimizer,
                                         weight_decay_groups(self._params, settings.decay_norm_and_bias),
                                         lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay)
        if not settings.decay_norm_and_bias and settings.weight_decay:
            spared = sum(p.numel() for p in self._params if p.ndim <= 1)
            self.outputs.logger.info(
                f"trainer.decay_norm_and_bias=false: weight_decay={settings.weight_decay:g} spares the {spared:,} "
                f"parameters of one dimension (biases, normalisation layers) and decays the other "
                f"{sum(p.numel() for p in self._params) - spared:,}")
        self.guard = NonFiniteGuard(device, (self.loss_name, *self.objectives.names), settings.max_nonfinite,
                                    what="student step", shared=True)
        # trainer.ema_decay: the running average of the weights that evaluations see and the run delivers.
        self.average = WeightAverage(student, settings.ema_decay) if settings.ema_decay else None
        self._calibration_said = False  # the first re-estimate of the average's statistics is logged, with its cost
        self.logged = self.objectives.logged(self.loss_name)  # what each student step returns and the loop sums
        if self.objectives.names:
            self.outputs.logger.info(self.objectives.describe(self.loss_name))
        source.bind(teacher, student, num_classes=num_classes, input_size=tuple(input_size),
                    batch_size=settings.batch_size, device=device, logger=self.outputs.logger)
        if device.type == "cuda":  # a student too large fails here, before anything is synthesized or written
            probe_started = time.perf_counter()
            check_student_fits(teacher, student, batch_size=settings.batch_size, input_size=tuple(input_size),
                               device=device, amp=amp)
            # Said with its time, which the budget does not count: a MobileNetV2 on an H200 spent 20 s between the
            # synthesizer's set-up and its first round (a WRN-40-1 3 s), the probe among it, not told apart.
            self.outputs.logger.info(f"the student fits at trainer.batch_size={settings.batch_size} (checked in "
                                     f"{time.perf_counter() - probe_started:.1f}s, before trainer.time_budget_s counts)")
        elif device.type == "cpu":  # out of memory, the kernel would kill the run without a word
            synthesis_batch, through_student = source.backward_batch()
            check_host_memory(teacher, student, batch_size=source.student_batch(), synthesis_batch=synthesis_batch,
                              synthesis_through_student=through_student, pool_bytes=source.memory_bytes(),
                              input_size=tuple(input_size), processes=dist.local_processes(),
                              shared_batches=shared_batches)
        self._captured = self._capture_plan()
        # The first of the evaluations in a row that found the student flat (one class, logits that barely move) and
        # not growing: (student step, logit range). Kept in memory only: after a resume the watch starts again.
        self._flat_since: tuple[int, float] | None = None

    @classmethod
    def from_options(cls, teacher: nn.Module | None, student: nn.Module, source: BatchSource | Synthesizer, *,
                     device: torch.device, num_classes: int, input_size: tuple[int, int, int], amp: bool = True,
                     shared_batches: int = 1, **options) -> "Distiller":
        """The Distiller from flat options: the trainer recipe's keys (``lr``, ``rounds``, ...; those not given
        come from ``recipes/trainer/default.yaml``) and :class:`~datafree.distill.settings.Outputs`' fields.
        ``shared_batches``: the processes that share each of the recipe's batches (``global_batch=true``), which the
        CPU's memory check says its batch sizes in."""
        outputs, settings = Outputs.split(options)
        return cls(teacher, student, source, TrainerSettings.from_options(**settings), device=device,
                   num_classes=num_classes, input_size=input_size, amp=amp, outputs=outputs,
                   shared_batches=shared_batches)

    # -- the student step -------------------------------------------------------------------------------
    def _capture_plan(self) -> CapturedStep | None:
        """The student step as one CUDA graph when asked for, on a GPU, and when every part of it can be captured.

        A source whose batches cannot be made inside the graph hands them over eagerly: the graph reads them
        from input buffers that each step refills in place.
        """
        if not self.settings.cuda_graphs or self.device.type != "cuda":
            return None
        blockers = self.objectives.capture_blockers()
        if dist.is_distributed():
            blockers.append(f"the run has {dist.world_size()} processes (DDP's gradient all-reduce is not captured)")
        if blockers:
            self.outputs.logger.info(f"trainer.cuda_graphs: the student step runs eagerly because {'; '.join(blockers)}")
            return None
        tensor_lr(self.optimizer)  # the captured step reads the learning rate from the device
        outside = self.source.capture_blockers()
        self._copied_in = bool(outside)
        self._inputs: tuple[torch.Tensor, torch.Tensor | None] | None = None  # the buffers a graph reads from
        if outside:
            self.outputs.logger.info("trainer.cuda_graphs: the batches are made outside the graph and copied into its "
                                     f"input buffers because {'; '.join(outside)}")
            return CapturedStep(lambda: self._step(*self._inputs), self.device)
        self._source_buffers = getattr(self.source, "buffers", 0)
        return CapturedStep(lambda: self._step(*self.source.next()), self.device)

    def _update(self) -> torch.Tensor:
        """One student update, captured or eager; what it returns is :attr:`logged`'s values."""
        try:
            if self._captured is None:
                return self._step(*self.source.next())
            if not self._copied_in:
                if getattr(self.source, "buffers", 0) != self._source_buffers:  # e.g. a halved synthesis batch
                    self._source_buffers = self.source.buffers
                    self._captured.reset()
                return self._captured()
            batch = self.source.next()
            if self._inputs is None:
                self._inputs = tuple(None if t is None else t.clone() for t in batch)
            elif any(t is not None and t.shape != b.shape for t, b in zip(batch, self._inputs)):
                return self._step(*batch)  # a short last batch: not worth a graph of its own
            else:
                for buffer, t in zip(self._inputs, batch):
                    if t is not None:
                        buffer.copy_(t)
            return self._captured()
        except torch.OutOfMemoryError:
            size = self.settings.batch_size
            raise DatafreeError(f"out of GPU memory in a student step with trainer.batch_size={size}: lower it "
                                f"(e.g. trainer.batch_size={max(1, size // 2)}).") from None

    def _step(self, inputs: torch.Tensor, teacher_logits: torch.Tensor | None) -> torch.Tensor:
        if teacher_logits is None:
            with torch.no_grad(), autocast(self.device, self.amp), self.objectives.taps("teacher"):
                teacher_logits = self.teacher(inputs).float()
        with autocast(self.device, self.amp), self.objectives.taps("student"):
            student_logits = self._step_student(inputs).float()
        loss, terms = self.objectives.student_loss(self.loss_name, self.loss(student_logits, teacher_logits),
                                                   student_logits, teacher_logits)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        dist.average_gradients(p.grad for module in self.step_modules for p in module.parameters())
        if self.settings.clip_grad_norm:  # ZSKT clips at 5; a device-side rescale, no host sync
            torch.nn.utils.clip_grad_norm_(self._params, self.settings.clip_grad_norm, foreach=True)
        self.guard.step(self.optimizer, loss, terms)  # skipped on the device when not finite
        if self.average is not None:
            self.average.update()
        return self.objectives.step_values(loss, terms)

    def _set_lr(self, progress: float, step: int) -> None:
        """The cosine schedule over the run; the student's rate also rises linearly over its first
        ``warmup_steps`` steps (counted in steps, not in a share of the run, whose length a time budget sets). The
        synthesizer follows the cosine alone: the warm-up guards the student."""
        factor = lr_at(progress, "cosine", 0.0)
        warmup = self.settings.warmup_steps
        set_lr(self.optimizer, self.settings.lr * factor * (min(1.0, (step + 1) / warmup) if warmup else 1.0))
        self.source.follow_schedule(factor)

    # -- the loop ---------------------------------------------------------------------------------
    def fit(self) -> DistillResult:
        settings, outputs, logger = self.settings, self.outputs, self.outputs.logger
        loop = Loop("distill", outputs.state, self.guard, logger, hint=self._NAN_HINT,
                    time_budget_s=settings.time_budget_s, checkpoint_every=settings.checkpoint_every)
        total_steps = settings.rounds * max(1, settings.student_steps)
        run = Progress()
        loss_sum = torch.zeros(len(self.logged), device=self.device)  # what the steps return, summed until a read-back
        saved = loop.resume(self._restore)
        if saved is not None:
            run = Progress(**{field.name: saved.get(field.name, field.default)
                              for field in dataclasses.fields(Progress) if field.name in saved})
            loss_sum = saved["loss_sum"].to(self.device)
            logger.info(f"resumed from {loop.last_good()}: in round {run.round + 1}, after student step {run.step}")

        def snapshot() -> dict:
            """The state at a step boundary: where the run is, its loss sums, the modules and the source."""
            return {**dataclasses.asdict(run), "loss_sum": loss_sum, **self._state_dicts()}

        stopped_by = "rounds"
        resumed_in_round = saved is not None and run.round_step > 0
        self.student.train()
        started, paced = time.perf_counter(), 0
        # A budgeted run's length is its clock's (experiment=fast sets a million rounds): the bar counts steps and their
        # rate, where a total would show "0% of 20,000,000" and an estimate of years.
        bar = tqdm(total=None if settings.time_budget_s else total_steps, initial=run.step, desc="distill",
                   disable=not (outputs.progress and is_main_process()), dynamic_ncols=True, leave=False)
        try:
            with loop:
                while run.round < settings.rounds:
                    if not resumed_in_round:
                        if loop.spent():
                            stopped_by = "time budget"
                            break
                        self.source.new_round()
                        if run.round == 0:
                            self._save_grid(self.source.grid_images(final=False))
                    resumed_in_round = False
                    while run.round_step < settings.student_steps:
                        self._set_lr(loop.fraction(run.step, total_steps), run.step)
                        loss_sum += self._update().nan_to_num(0.0, 0.0, 0.0)
                        run.loss_count += 1
                        run.step += 1
                        run.round_step += 1
                        bar.update(1)
                        if run.step % settings.log_every == 0:
                            self._log(loop, run, loss_sum, bar)
                        loop.step_done(run.step, f"student step {run.step} (round {run.round + 1})", snapshot)
                        if run.step % 10 == 0 and loop.spent():
                            break
                    self.source.end_round()
                    run.round, run.round_step = run.round + 1, 0
                    run.rounds_done += 1
                    if paced < 2:  # this process's first round (with its warm-up), then the second (the pace)
                        started = self._log_pace(loop, run, started, first=paced == 0)
                        paced += 1
                    if run.rounds_done % settings.eval_every == 0:
                        self._evaluate_and_save(loop, run)
                        loop.save_if_best(run.metrics.get("student_accuracy"), snapshot)
                    loop.stop_point(f"student step {run.step} (end of round {run.round})", snapshot)
                if run.rounds_done % settings.eval_every != 0 or not run.metrics:
                    self._evaluate_and_save(loop, run)
                run.skipped = int(self.guard.skipped.item())
                loop.save(snapshot, force=True)  # resuming a finished run re-evaluates; more rounds continue it
        finally:
            bar.close()
        if self.average is not None:  # the run hands on what it evaluated and saved: the average (its state: both)
            self.student.load_state_dict(self.average.module.state_dict())
        self._save_grid(self.source.grid_images(final=True))
        row = self.source.row()
        pool = getattr(self.source, "pool", None)
        return DistillResult(
            student_accuracy=run.metrics.get("student_accuracy"), teacher_accuracy=run.metrics.get("teacher_accuracy"),
            agreement=run.metrics.get("agreement"), rounds=run.rounds_done, student_steps=run.step,
            images_synthesized=dist.total(row.get("images", 0)), wall_time_s=loop.elapsed(), stopped_by=stopped_by,
            skipped_steps=run.skipped, epochs=row["epoch"] + 1 if "epoch" in row else None,
            unaveraged_accuracy=run.metrics.get("unaveraged_accuracy"),
            **({"pool_capacity": pool.capacity, "pool_filled": len(pool), "pool_bytes": pool.nbytes()} if pool is not None else {}),
        )

    _NAN_HINT = "Lower trainer.lr or the synthesizer's learning rate, or check the teacher on real inputs."

    def _log_pace(self, loop: Loop, run: Progress, started: float, first: bool) -> float:
        """After this process's first round: how long it took and when the log speaks next, so that a slow run
        (a large pair on the CPU) says early what to expect rather than nothing until its first evaluation. After its
        second: the pace, and what it means for the budget (the first round, with its warm-up of CUDA graphs and
        cuDNN's algorithm search, took 6.3 s on a GPU where the run's rounds averaged 0.43 s: it put a 1,396-round run
        at about 95). The device is synchronised at both ends (two waits in a run), so that the time is the
        device's work, not how fast the host queued it. Returns when the next round starts."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        seconds, settings = now - started, self.settings
        if first:
            budget = settings.time_budget_s
            if budget and loop.spent() and run.round < settings.rounds:
                # The budget is read between rounds and student steps: a round that outlasts it still ends.
                self.outputs.logger.info(
                    f"round {run.round} took {seconds:.1f}s (with its warm-up), more than trainer.time_budget_s="
                    f"{budget:g}, which is read between rounds: the run ends with it. For shorter rounds lower "
                    "synthesizer.batch_size (and trainer.batch_size).")
            elif run.rounds_done % settings.eval_every and run.round < settings.rounds:  # else an evaluation follows
                ends = f", or when trainer.time_budget_s={budget:g} ends" if budget else ""
                self.outputs.logger.info(
                    f"round {run.round} took {seconds:.1f}s (with its warm-up); the next evaluation comes after round "
                    f"{(run.rounds_done // settings.eval_every + 1) * settings.eval_every} (trainer.eval_every="
                    f"{settings.eval_every}){ends}")
            return now
        left = settings.rounds - run.round
        if left <= 0:
            return now
        budget = settings.time_budget_s
        if budget:
            fit = int(max(0.0, budget - loop.elapsed()) / max(seconds, 1e-9))
            pace = (f"about {run.rounds_done + fit:,} rounds fit in trainer.time_budget_s={budget:g}" if fit < left else
                    f"the {settings.rounds:,} rounds (trainer.rounds) end before trainer.time_budget_s={budget:g}, in "
                    f"about {left * seconds:,.0f}s more")
        else:
            pace = (f"the last round takes about {seconds:,.0f}s" if left == 1 else
                    f"the {left:,} rounds left take about {left * seconds:,.0f}s")
        self.outputs.logger.info(f"round {run.round} took {seconds:.2f}s: {pace} at this pace")
        return now

    def _log(self, loop: Loop, run: Progress, loss_sum: torch.Tensor, bar) -> None:
        """Read the losses back (one host copy), stop on too many non-finite steps, log the means."""
        sums, guard_values, counters, synth = self._read_back(loss_sum)
        last_good = loop.last_good()
        if last_good and run.last_good:
            last_good = f"{last_good} (student weights: {run.last_good})"
        new_skips = loop.check(run.step, guard_values, {k[len("synth/"):]: v for k, v in synth.items()},
                               last_good or run.last_good) - run.skipped
        means = [value / max(1, run.loss_count - new_skips) for value in sums]
        run.terms = {**dict(zip(self.logged[1:], means[1:])), **counters}
        run.skipped += new_skips
        accuracy = run.metrics.get("student_accuracy")
        bar.set_postfix(loss=f"{means[0]:.4f}", **({"acc": f"{accuracy:.3f}"} if accuracy is not None else {}))
        self.outputs.logger.scalars(run.step, {
            "train/kd_loss": means[0], "train/lr": float(self.optimizer.param_groups[0]["lr"]),
            "train/skipped_steps": run.skipped, **{f"train/{name}": value for name, value in run.terms.items()}, **synth})
        loss_sum.zero_()
        run.loss_count = 0

    def _read_back(self, loss_sum: torch.Tensor) -> tuple[list[float], list[float], dict[str, float], dict[str, float]]:
        """In one device-to-host copy: the step sums (as :attr:`logged`), the guard's counters, the terms' counters
        (the discriminator's skipped steps) and the source's values (``synth/...``)."""
        source = self.source.read_back()
        counters = self.objectives.tensors()
        guard = self.guard.tensors()
        parts = [*dist.mean(loss_sum.float()).unbind(),  # the losses over every rank's batches
                 *guard, *counters.values(), *source.values()]
        values = torch.stack([v.float().to(loss_sum.device).reshape(()) for v in parts]).tolist() if parts else []
        n, g, c = len(loss_sum), len(guard), len(counters)
        return (values[:n], values[n:n + g], dict(zip(counters, values[n + g:n + g + c])),
                {f"synth/{k}": v for k, v in zip(source, values[n + g + c:])})

    # -- state ------------------------------------------------------------------------------------
    def _state_dicts(self) -> dict:
        """The Distiller's parts in a state; the loop adds the guard, the RNG states and the clock."""
        return {"student": self.student.state_dict(), "optimizer": self.optimizer.state_dict(),
                # the dead-student watch (_stayed_flat): a resumed run goes on counting from the same evaluation
                "flat_since": None if self._flat_since is None else list(self._flat_since),
                **({"student_average": self.average.state_dict()} if self.average is not None else {}),
                **self.source.state_dict(),
                # Hint adapters (features) and the discriminator with its optimiser: not in the student's state dict.
                **self.objectives.state_dict()}

    def _restore(self, saved: dict) -> None:
        if saved.get("kind") != "distill":  # e.g. "distill-offline": the separate loop of datafree <= 0.1.0
            raise DatafreeError(f"cannot resume: the saved state is of a {saved.get('kind')!r} run, which this version "
                                "no longer continues; start a new run (without resume) in another folder.")
        self.student.load_state_dict(saved["student"])
        load_optimizer_state(self.optimizer, saved["optimizer"])
        if self.average is not None:
            self.average.load_state_dict(saved["student_average"])
        self.source.load_state_dict(saved)
        self.objectives.load_state_dict(saved)
        since = saved.get("flat_since")  # absent in states saved before the watch was kept
        self._flat_since = None if since is None else (int(since[0]), float(since[1]))

    # -- evaluation and outputs ---------------------------------------------------------------------
    def _evaluate_and_save(self, loop: Loop, run: Progress) -> None:
        """Evaluate, write a summary.csv row (with the terms' means at the last read-back) and student.pt."""
        outputs, logger = self.outputs, self.outputs.logger
        row: dict[str, float] = {"round": run.rounds_done, "step": run.step,
                                 **{k: dist.total(v) if k == "images" else v for k, v in self.source.row().items()},
                                 "time_s": round(loop.elapsed(), 2),
                                 "skipped_steps": int(self.guard.skipped.item())}  # evaluation syncs anyway
        delivered = self.student if self.average is None else self.average.module
        if self.average is not None and self.settings.ema_bn_batches:
            self._reestimate_average(run.step)
        if outputs.test_batches is not None:
            result = evaluate(delivered, outputs.test_batches, self.device, self.amp, reference=self.teacher,
                              num_classes=self.num_classes, oom_hint=self._pool_hint())
            row["student_accuracy"] = result["accuracy"]
            line = f"round {run.rounds_done} step {run.step}: student {result['accuracy']:.4f}"
            if self.average is not None:  # the weights themselves, beside their average: what the averaging gives
                row["unaveraged_accuracy"] = evaluate(self.student, outputs.test_batches, self.device, self.amp,
                                                      oom_hint=self._pool_hint())["accuracy"]
                line += f" (the average of its weights; the weights themselves {row['unaveraged_accuracy']:.4f})"
            if self.teacher is not None:
                row.update(teacher_accuracy=result["reference_accuracy"], agreement=result["agreement"])
                line += f" teacher {result['reference_accuracy']:.4f} agreement {result['agreement']:.4f}"
            row["top_class_share"] = round(result.get("top_class_share", float("nan")), 4)  # 0.9 or more: collapsed
            row["logit_range"] = round(result.get("logit_range", float("nan")), 4)  # about 0: a dead student
            logger.scalars(run.step, {"eval/student_accuracy": result["accuracy"],
                                      **({"eval/agreement": result["agreement"]} if self.teacher is not None else {})})
            *_, source = self._read_back(torch.zeros(0, device=self.device))
            synth = " ".join(f"{k} {v:.3g}" for k, v in source.items())
            logger.info(f"{line} ({row['time_s']:.0f}s){' | ' + synth if synth else ''}")
            if outputs.warn_collapse:
                self._warn_if_collapsed(result, run.step)
        logger.summary({**row, **run.terms})
        if outputs.checkpoint_path is not None and outputs.student_info is not None and logger.enabled:
            info = dataclasses.replace(outputs.student_info, test_accuracy=row.get("student_accuracy"))
            save_classifier(outputs.checkpoint_path, delivered, info)
            run.last_good = str(outputs.checkpoint_path)
        run.metrics = row

    def _reestimate_average(self, step: int) -> None:
        """The average's BatchNorm statistics, re-estimated on the student's own inputs (averaging.py says why),
        from draws seeded by the step and the rank, so that a resumed run re-estimates exactly as the first did."""
        count = self.settings.ema_bn_batches
        started = time.perf_counter()
        batches = self.source.calibration_batches(count, seed=calibration_seed(step))
        if batches is None and self.source.keeps_calibration_images:  # none yet: only before the first batch
            if batchnorm_layers(self.average.module):
                self.outputs.logger.info(
                    f"trainer.ema_bn_batches={count}: no {self.source.calibration_images} images yet at step {step}, "
                    "so this evaluation's average keeps its BatchNorm statistics averaged with its weights")
            return
        used = reestimate_batchnorm(self.average.module, batches or (), self.device, self.amp)
        if self._calibration_said:
            return
        self._calibration_said = True
        if used:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.outputs.logger.info(
                f"trainer.ema_bn_batches={count}: the average's BatchNorm statistics re-estimated before each "
                f"evaluation over {used} batches of {self.source.student_batch()} {self.source.calibration_images} "
                f"images ({time.perf_counter() - started:.2f} s this time)")
        elif batches is None and batchnorm_layers(self.average.module):
            self.outputs.logger.info(
                f"trainer.ema_bn_batches={count}: this run keeps no replay pool to re-estimate the average's "
                "BatchNorm statistics on; they are averaged with its weights")

    def _pool_hint(self) -> str:
        """The replay pool's share of the device, for an out-of-memory message: it is often the largest allocation,
        and an auto pool is sized from the memory free when the run starts, so runs started together on one GPU
        each count the others' memory as free."""
        pool = getattr(self.source, "pool", None)
        if pool is None or pool.device.type != "cuda" or not pool.capacity:
            return ""
        return (f", or trainer.pool_capacity (the replay pool holds {len(pool):,} images in "
                f"{pool.nbytes() / 2**30:.1f} GiB and grows to {pool.capacity:,}; trainer.pool_capacity=auto takes up "
                f"to a quarter of the memory free when the run starts, so runs started together on one GPU crowd each "
                f"other)")

    COLLAPSED_SHARE = COLLAPSED_SHARE  # evaluate.py: one class for this share of the test images, or more
    # A student whose logits move over the test set by less than this share of what the teacher's move has lost its
    # last activations (a dead ReLU stage): the output is about the classifier's bias for every image. A KD student
    # that learned anything moves on the teacher's scale. Measured: a torchvision ResNet-18 dead at 128 px moved
    # by 0.17 on real images, 0.8% of its ResNet-50 teacher's 22.4 (docs/benchmarks.md). Without a teacher to
    # compare with, an absolute bound: logits that move by less than DEAD_RANGE.
    DEAD_SHARE = 0.05
    DEAD_RANGE = 1e-3
    # A flat student is not yet a dead one: a torchvision MobileNetV3-Large at 128 px moved by 0.004 against its
    # teacher's 31 at its first evaluation (step 200), then its range grew 15x, 6x and 3x over the next three spans
    # of 200 student steps, and it learned (docs/benchmarks.md). Its BatchNorm momentum, torchvision's 0.01, kept
    # its running statistics (what evaluation uses) far from its weights' for hundreds of steps; trainer.bn_momentum
    # (models/bn_momentum.py) now raises it, but any student's statistics lag a little at first. The trainer calls
    # a flat student dead only when its range has not doubled over DEAD_AFTER_STEPS student steps.
    DEAD_AFTER_STEPS = 200
    WAKING_GROWTH = 2.0

    @classmethod
    def is_dead(cls, result: dict) -> bool:
        """Whether one evaluation's ``result`` looks like a dead student's: one class for nearly every image, and
        logits that barely move between images (against the teacher's range where the result has it). One
        evaluation cannot tell a dead student from one whose running statistics still lag; ``fit`` also asks that
        the range has not doubled over ``DEAD_AFTER_STEPS`` student steps before it says so."""
        spread, scale = result.get("logit_range", math.nan), result.get("reference_logit_range", math.nan)
        limit = cls.DEAD_SHARE * scale if math.isfinite(scale) and scale > 0 else cls.DEAD_RANGE
        return (result.get("top_class_share", 0.0) >= cls.COLLAPSED_SHARE and math.isfinite(spread)
                and spread < limit)

    def _stayed_flat(self, result: dict, step: int) -> bool:
        """Whether the student has been flat (``is_dead``) without its logit range doubling for DEAD_AFTER_STEPS
        student steps up to this evaluation at ``step``; keeps the watch for the next evaluation."""
        if not self.is_dead(result):
            self._flat_since = None
            return False
        spread, since = result["logit_range"], self._flat_since
        if since is None or spread > self.WAKING_GROWTH * since[1]:  # the first flat evaluation, or waking up
            self._flat_since = (step, spread)
            return False
        return step - since[0] >= self.DEAD_AFTER_STEPS

    def _warn_if_collapsed(self, result: dict, step: int = 0) -> None:
        """Say so when the student's accuracy is a constant answer rather than a measure of what it learned: logits
        that are not finite (whose argmax gives every image one class), or one class for nearly every test image
        (a dead student when its logits have stayed flat: ``_stayed_flat``)."""
        logger = self.outputs.logger
        dead = self._stayed_flat(result, step)
        if result.get("nonfinite_share"):
            logger.warning(f"the student's logits are not finite for {result['nonfinite_share']:.1%} of the test "
                           f"images (argmax gives them one class, so the accuracy says nothing): its weights or BatchNorm running "
                           f"statistics hold NaN or Inf. {self._NAN_HINT}")
        elif answers_one_class(result) or dead:
            info = self.outputs.student_info
            top = result["top_class"]
            name = f"'{info.classes[top]}' ({top})" if info is not None and top < len(info.classes) else str(top)
            share = f"the student gives class {name} to {result['top_class_share']:.1%} of the test images"
            scale = result.get("reference_logit_range", math.nan)
            moves = (f"its logits barely move between images (by at most {result['logit_range']:.2g}"
                     + (f", the teacher's by {scale:.3g}" if math.isfinite(scale) else "") + ")")
            if dead:
                warmup, since = self.settings.warmup_steps, self._flat_since
                logger.warning(
                    f"{share}, and {moves}, as at step {since[0]}, without doubling since: its last "
                    "activations died, or nearly all of them, so little or no gradient reaches the layers before them "
                    "(the students measured so stayed so to the end of their run). A learning rate too high for this "
                    "student in the first steps does that: start again with "
                    + (f"trainer.warmup_steps={max(200, 4 * warmup)} (now {warmup})" if warmup
                       else "trainer.warmup_steps=200 (now 0)")
                    + f" or a lower trainer.lr (now {self.settings.lr:g}).")
                return
            flat = (f" For now {moves}: a student whose BatchNorm running statistics still lag its weights does "
                    "so at first (a torchvision MobileNetV3 at its own momentum of 0.01 did for 600 steps, then "
                    f"learned); if they do not double within {self.DEAD_AFTER_STEPS} student steps, the log will say "
                    "the student died." if self._flat_since is not None else "")
            logger.warning(
                f"{share}: it has not learned to tell the classes apart on real images yet.{flat} If it stays so, look at "
                f"samples.png (does the teacher give every class?) and the synth/ terms (synth/ce is 0.5 x the "
                f"teacher's cross-entropy to the asked class; above about 1 the teacher does not see the asked "
                f"classes).")

    def _save_grid(self, images: torch.Tensor | None) -> None:
        """The samples in rows by the class the teacher gives them."""
        if images is None or self.outputs.grid_path is None or not self.outputs.logger.enabled or self.teacher is None:
            return
        with torch.no_grad(), autocast(self.device, self.amp):
            logits = self.teacher(images).float()
        info = self.outputs.student_info
        classes = info.classes if info is not None else ()
        save_sample_grid(images, logits.argmax(1), self.outputs.grid_path, classes, num_classes=logits.shape[1])
