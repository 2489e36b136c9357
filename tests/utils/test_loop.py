"""The loop helper: clock, stop requests (save, then raise), saves that skip non-finite streaks, resume."""
import os
import signal

import pytest
import torch

from datafree.errors import DatafreeError
from datafree.utils.logging import RunLogger
from datafree.utils.loop import Loop, check_loop_settings
from datafree.utils.nonfinite import NonFiniteGuard
from datafree.utils.run_state import LAST, StateFiles
from datafree.utils.signals import Interrupted

CPU = torch.device("cpu")


def _loop(tmp_path, resume=False, **kw):
    guard = NonFiniteGuard(CPU, ("ce",), max_in_row=2)
    state = StateFiles(tmp_path, config={"x": 1}, resume=resume, notice=lambda m: None)
    logger = RunLogger(tmp_path, tensorboard=False, enabled=False)
    return Loop("test", state, guard, logger, hint="Lower x.lr.", **kw)


def test_fraction_follows_steps_or_the_clock_whichever_is_further(tmp_path):
    loop = _loop(tmp_path)
    assert loop.fraction(3, 12) == 0.25 and not loop.spent()  # no budget: steps alone
    loop.time_budget_s = 10.0
    loop._started -= 5.0  # as if 5 s had passed
    assert 0.5 <= loop.fraction(1, 12) < 0.6 and loop.fraction(9, 12) == 0.75
    loop._started -= 5.0
    assert loop.spent()


def test_stop_request_saves_then_raises_and_resume_restores_clock_best_guard_rng(tmp_path):
    loop = _loop(tmp_path, checkpoint_every=100)
    loop.best = 0.5
    loop._started -= 7.0
    with loop:
        loop.step_done(1, "step 1", lambda: {"step": 1})  # no request: nothing happens
        assert not (tmp_path / LAST).exists()
        os.kill(os.getpid(), signal.SIGTERM)
        with pytest.raises(Interrupted, match=r"SIGTERM after step 2: full state saved to .*state_last.pt"):
            loop.step_done(2, "step 2", lambda: {"step": 2})
    draws = torch.rand(3)
    again = _loop(tmp_path, resume=True)
    restored = []
    saved = again.resume(restored.append)
    assert restored == [saved] and saved["step"] == 2 and saved["kind"] == "test"
    assert again.best == 0.5 and again.elapsed() >= 7.0
    assert torch.equal(torch.rand(3), draws)  # the RNG as it was at the save


def test_saves_skip_a_non_finite_streak_unless_forced(tmp_path):
    loop = _loop(tmp_path, checkpoint_every=2, check_at_checkpoints=True)
    loop.step_done(2, "step 2", lambda: {"step": 2})
    loop.guard.streak.fill_(1)
    loop.guard.worst.fill_(1)
    loop.step_done(4, "step 4", lambda: {"step": 4})  # checked (1 < 2 in a row), not saved
    assert torch.load(tmp_path / LAST, weights_only=True)["step"] == 2
    loop.save_if_best(0.9, lambda: {"step": 4})
    assert loop.best == 0.9 and not (tmp_path / "state_best.pt").exists()
    loop.save(lambda: {"step": 5}, force=True)
    assert torch.load(tmp_path / LAST, weights_only=True)["step"] == 5
    loop.guard.worst.fill_(2)
    with pytest.raises(DatafreeError, match=r"2 steps in a row .* by step 6 .*last good checkpoint is .*state_last.pt\. "
                                            r"Lower x.lr."):
        loop.step_done(6, "step 6", lambda: {"step": 6})


def test_bad_loop_settings_name_the_key():
    with pytest.raises(DatafreeError, match=r"mine.time_budget_s must be positive"):
        check_loop_settings("mine.", "step", time_budget_s=0, checkpoint_every=1)
    with pytest.raises(DatafreeError, match=r"mine.checkpoint_every counts steps between"):
        check_loop_settings("mine.", "step", time_budget_s=None, checkpoint_every=1.5)
