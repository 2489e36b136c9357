import random

import numpy as np
import pytest
import torch

from datafree.errors import DatafreeError
from datafree.utils.run_state import (BEST, LAST, StateFiles, config_differences, resume_requested, rng_state,
                                      set_rng_state)


def test_rng_state_round_trips_through_a_weights_only_file(tmp_path):
    torch.save(rng_state(), tmp_path / "rng.pt")
    draws = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(draws[0], again[0]) and (draws[1] == again[1]).all() and draws[2] == again[2]


def test_only_run_length_and_logging_may_differ():
    saved = {"seed": 0, "trainer": {"lr": 0.1, "rounds": 10, "log_every": 5}, "resume": None, "data": {"n": 1}}
    current = {"seed": 0, "trainer": {"lr": 0.2, "rounds": 20, "log_every": 1}, "resume": True, "extra": 3}
    # "extra" is absent from the saved recipe: a key a later datafree added, whose default is the old behaviour
    assert config_differences(saved, current) == ["data.n: 1 -> '<absent>'", "trainer.lr: 0.1 -> 0.2"]


def test_state_files_rotate_and_refuse_what_cannot_be_meant(tmp_path):
    files = StateFiles(tmp_path, config={"a": 1})
    files.save({"step": 1})
    files.save({"step": 2})
    files.save({"step": 3}, best=True)  # best is its own file; last and prev stay
    assert torch.load(tmp_path / LAST, weights_only=True)["step"] == 2
    assert torch.load(tmp_path / BEST, weights_only=True)["step"] == 3
    assert StateFiles(tmp_path, config={"a": 1}).load() is None  # resume not asked for
    assert StateFiles(tmp_path, config={"a": 1}, resume=True).load()["step"] == 2
    assert StateFiles(tmp_path, config={"a": 1}, enabled=False).save({"step": 3}) is None  # not rank 0
    with pytest.raises(DatafreeError, match="already holds the saved state"):
        resume_requested(None, tmp_path)
    assert resume_requested(True, tmp_path) and resume_requested(str(tmp_path), tmp_path)
    with pytest.raises(DatafreeError, match="empty does not exist"):
        resume_requested(True, tmp_path / "empty")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatafreeError, match="holds no saved state"):
        resume_requested(True, tmp_path / "empty")
    assert resume_requested(False, tmp_path / "empty") is False
