"""What every training loop needs besides its own step: a clock, stop requests, full-state saves.

A loop (teacher training, distillation, synthesis, ...) owns its step and its
bookkeeping; :class:`Loop` owns what must behave the same in all of them for a
resume to be exact and a pre-empted run to lose nothing:

* the clock: time elapsed, including the time before a resume; the fraction of
  the run done, by steps or by the time budget, whichever is further along (what
  a schedule follows); whether the budget is spent;
* stop requests (SIGTERM/SIGINT), honoured only at step boundaries: save, then raise;
* full-state saves (periodic, forced, best) that never replace a good state with
  one taken in the middle of a run of non-finite (skipped) steps;
* resume: the newest readable state back, with the clock, the best score, the
  :class:`~datafree.utils.nonfinite.NonFiniteGuard`, the logger's position and the RNG states restored.

Under torchrun every rank runs the same loop and writes its own state files (its RNG
states, its pool); the ranks agree at every step boundary on whether to stop and on the
clock (:class:`~datafree.utils.dist.Agreement`), so that they stop, save and run out of
time at the same step, and a resume continues from the newest state that every rank has.

The shape of a loop::

    check_loop_settings("mine.", "step", time_budget_s=..., checkpoint_every=...)
    loop = Loop("mine", state, guard, logger, hint="Lower mine.lr.", time_budget_s=..., checkpoint_every=...)
    saved = loop.resume(restore)          # restore(saved) puts the loop's own parts back
    def snapshot():                       # the loop's own bookkeeping, at a step boundary
        return {"step": step, "model": model.state_dict(), ...}
    with loop:                            # SIGTERM/SIGINT now only set a flag
        while step < steps and not loop.spent():
            ...one step; lr = peak * schedule(loop.fraction(step, steps))...
            step += 1
            loop.step_done(step, f"step {step}", snapshot)
        loop.save(snapshot, force=True)   # the end: resuming a finished run continues it
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable

import torch

from datafree.errors import DatafreeError
from datafree.utils import dist
from datafree.utils.logging import RunLogger
from datafree.utils.nonfinite import NonFiniteGuard
from datafree.utils.run_state import StateFiles, rng_state, set_rng_state
from datafree.utils.signals import StopRequest, interrupted

Snapshot = Callable[[], dict]


def check_loop_settings(prefix: str, what: str, *, time_budget_s, checkpoint_every) -> None:
    """Refuse a time budget or checkpoint interval a loop cannot follow; ``prefix`` is the recipe node's path."""
    if time_budget_s is not None and time_budget_s <= 0:
        raise DatafreeError(f"{prefix}time_budget_s must be positive or null, got {time_budget_s}.")
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) or checkpoint_every < 0:
        raise DatafreeError(f"{prefix}checkpoint_every counts {what}s between full-state checkpoints: give an int >= 0 "
                            f"(0 = only on a signal and at the end), not {checkpoint_every!r}.")


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


class Loop:
    """Clock, stop requests, non-finite checks and full-state saves of one loop over ``guard``'s steps.

    ``kind`` names the loop in its state files; ``hint`` is what the user should change
    when too many steps in a row were not finite. ``check_at_checkpoints``: read the
    guard before each periodic save, for loops that read nothing back between saves. A loop
    without optimiser steps and full states of its own (synthesis into shards) gives neither
    ``state`` nor ``guard`` and uses only the clock and :meth:`requested_stop`.
    """

    def __init__(self, kind: str, state: StateFiles | None, guard: NonFiniteGuard | None, logger: RunLogger, *, hint: str,
                 time_budget_s: float | None = None, checkpoint_every: int = 0, check_at_checkpoints: bool = False):
        self.kind, self.state, self.guard, self.logger, self.hint = kind, state, guard, logger, hint
        self.time_budget_s, self.checkpoint_every = time_budget_s, checkpoint_every
        self.check_at_checkpoints = check_at_checkpoints
        self.best = -math.inf  # the best evaluation so far: what state_best.pt holds
        self._started = time.perf_counter()
        self._stop = StopRequest()
        self._saves = 0  # states written (or resumed from) so far: which state of one rank matches which of another
        # Several ranks: the stop decision and the clock are the ranks' common ones (see the module docstring).
        self._agreement = dist.Agreement() if dist.active() else None

    # -- the clock ------------------------------------------------------------------------------------
    def elapsed(self) -> float:
        """Seconds this run has been going, the time before a resume included (under torchrun: the ranks' common
        clock, as of the last step boundary, so that every rank follows the same schedule and budget)."""
        if self._agreement is not None:
            return self._agreement.elapsed
        return self._own_elapsed()

    def _own_elapsed(self) -> float:
        return time.perf_counter() - self._started

    def fraction(self, done: float, total: float) -> float:
        """Fraction of the run done: ``done / total``, or by the clock when a budget is set, whichever is further."""
        fraction = done / max(1, total)
        if self.time_budget_s:
            fraction = max(fraction, self.elapsed() / self.time_budget_s)
        return fraction

    def spent(self) -> bool:
        """Whether the time budget (if any) is used up."""
        return bool(self.time_budget_s) and self.elapsed() >= self.time_budget_s

    # -- resume -----------------------------------------------------------------------------------------
    def resume(self, restore: Callable[[dict], None]) -> dict | None:
        """The newest readable saved state (None for a new run), after ``restore(saved)`` put the loop's parts back.

        The RNG states are set last: nothing after them may draw random numbers.
        """
        if dist.active():
            saved = self._load_common()
        else:
            saved = self.state.load() if self.state is not None else None
            if saved is not None and int(saved.get("world_size", 1)) != 1:
                raise self._other_world(saved)
        if saved is None:
            return None
        self._started -= saved["elapsed_s"]
        if self._agreement is not None:
            self._agreement.elapsed = float(saved["elapsed_s"])
        self.best = saved["best"]
        self._saves = int(saved.get("saves", 0))
        if "log" in saved:
            self.logger.load_state_dict(saved["log"])
        restore(saved)
        self.guard.load_state_dict(saved["guard"])
        set_rng_state(saved["rng"])
        return saved

    def _load_common(self) -> dict | None:
        """Each rank's own state, all of the same save: the newest one that every rank has.

        Ranks save at the same step boundaries, but a kill can land between one rank's write
        and another's; a rank that got one save further then falls back to its previous state.
        """
        own = self.state.load() if self.state is not None else None
        mine = None if own is None else (int(own.get("saves", 0)), int(own.get("world_size", 1)))
        found = dist.all_gather_objects(mine)
        if all(entry is None for entry in found):
            return None
        for entry in found:
            if entry is not None and entry[1] != dist.world_size():
                raise self._other_world({"world_size": entry[1]})
        missing = [r for r, entry in enumerate(found) if entry is None]
        if missing:
            raise DatafreeError(f"cannot resume: rank {missing[0]} finds no saved state of its own in {self.state.directory} "
                                f"({self.state.name_for(missing[0])}): every rank of the run saves its own; copy the "
                                "run folder with all its state files, or start a new run.")
        common = min(entry[0] for entry in found)
        if mine[0] != common:
            own = self.state.load(saves=common)
        usable = dist.all_gather_objects(own is not None)
        if not all(usable):
            bad = usable.index(False)
            raise DatafreeError(f"cannot resume: rank {bad}'s state from the save the other ranks have (number {common}) "
                                f"cannot be read in {self.state.directory}; start a new run.")
        return own

    def _other_world(self, saved: dict) -> DatafreeError:
        then, now = int(saved.get("world_size", 1)), dist.world_size()
        launch = "without torchrun" if then == 1 else f"with torchrun and {then} processes in all (e.g. --nproc_per_node={then})"
        return DatafreeError(f"cannot resume: the run was saved by {then} process{'es' if then > 1 else ''} and this one "
                             f"has {now}: each process saved its own random state and replay pool, so resume it {launch}.")

    # -- saving -----------------------------------------------------------------------------------------
    def save(self, snapshot: Snapshot, *, force: bool = False, best: bool = False) -> Path | None:
        """Write the full state: ``snapshot()`` plus the clock, the best score, the guard and the RNG states.

        Saving syncs anyway, so the non-finite streak is free to read here: a state taken in
        the middle of a run of skipped steps does not replace the last good one (unless ``force``).
        """
        if self.state is None:
            return None
        if not force and int(self.guard.streak.item()):
            self.logger.info(f"checkpoint skipped: the last {self.guard.what}s were not finite")
            return None
        if not best:
            self._saves += 1
        return self.state.save({"kind": self.kind, **snapshot(), "best": self.best, "elapsed_s": self.elapsed(),
                                "guard": self.guard.state_dict(), "rng": rng_state(), "log": self.logger.state_dict(),
                                "saves": self._saves, "world_size": dist.world_size()}, best=best)

    def save_if_best(self, score: float | None, snapshot: Snapshot) -> None:
        """After an evaluation: a better ``score`` becomes the best, and its state ``state_best.pt``."""
        if score is None or not score > self.best or not self.checkpoint_every or self.state is None:
            return  # NaN (nothing to evaluate on) is never better
        self.best = score
        self.save(snapshot, best=True)

    # -- step boundaries ----------------------------------------------------------------------------------
    def __enter__(self) -> "Loop":
        self._stop.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        try:
            if self._agreement is not None and exc[0] is None:
                self._agreement.settle()  # every rank started the last exchange: finish it before the next collective
        finally:
            self._stop.__exit__(*exc)

    def stop_point(self, where: str, snapshot: Snapshot) -> None:
        """On SIGTERM/SIGINT: save the full state and raise Interrupted; ``where`` says how far the run got.

        Under torchrun a signal to any rank stops every rank at the same boundary (one after it
        arrived); each saves its own state, and none exits before all have saved.
        """
        signum = self.requested_stop()
        if signum:
            path = self.save(snapshot, force=True)
            dist.barrier()
            raise interrupted(signum, where, path)

    def requested_stop(self, blocking: bool = False) -> int | None:
        """The signal that asks this loop to stop at this boundary (under torchrun: the one any rank received,
        agreed at the same boundary everywhere), or None; for loops that stop in their own way. ``blocking``
        agrees on this boundary's requests now, for loops whose steps are too long to act one step later."""
        signum = self._stop.signum
        if blocking and self._agreement is not None:
            return dist.agreed_stop(signum)
        if self._agreement is not None:
            self._agreement.exchange(signum, self._own_elapsed())
            signum = self._agreement.signum
        return signum

    def step_done(self, step: int, where: str, snapshot: Snapshot) -> None:
        """After each step: honour a stop request, and save every ``checkpoint_every`` steps."""
        self.stop_point(where, snapshot)
        if self.checkpoint_every and step % self.checkpoint_every == 0:
            if self.check_at_checkpoints:
                self.check(step)
            self.save(snapshot)

    # -- non-finite steps ---------------------------------------------------------------------------------
    def check(self, step: int, values: list[float] | None = None, synth_terms: dict[str, float] | None = None,
              last_good: str | None = None) -> int:
        """Stop the run after too many non-finite steps in a row; returns the steps skipped so far.

        ``values`` are the guard's tensors already read back with the loop's losses (read here
        when None); ``last_good`` names what to go back to, by default :meth:`last_good`.
        """
        if values is None:
            values = torch.stack(self.guard.tensors()).tolist()
        return self.guard.check(values, step, last_good or self.last_good(), self.hint, synth_terms)

    def last_good(self) -> str | None:
        """The newest state written or read, the one a failed run should go back to."""
        state = self.state.last_saved if self.state is not None else None
        return str(state) if state else None
