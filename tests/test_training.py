"""Teacher training: bitwise resume after SIGTERM (data order included), NaN steps skipped."""
import os
import signal

import pytest
import torch
import torch.nn.functional as F

import datafree.training as training
import datafree.utils.loop as loop_module
from datafree.data import DeviceBatches
from datafree.data.shapes import make_shapes
from datafree.errors import DatafreeError
from datafree.models import create_model
from datafree.utils.run_state import StateFiles
from datafree.utils.signals import Interrupted


def _train(state_dir, resume=False, kill_at=None, **kw):
    data = make_shapes(96, image_size=8, seed=0)
    torch.manual_seed(0)
    model = create_model("microcnn", num_classes=10)
    batches = DeviceBatches(data, batch_size=16, shuffle=True, augment=True, drop_last=True, crop_padding=1, seed=3)
    state = StateFiles(state_dir, config={"x": 1}, resume=resume, notice=lambda m: None)
    options = dict(epochs=3, lr=0.05, amp=False, progress=False, state=state, checkpoint_every=4)
    options.update(kw)
    if kill_at is not None:
        real, calls = F.cross_entropy, [0]

        def cross_entropy(*args, **kwargs):
            calls[0] += 1
            if calls[0] == kill_at:
                os.kill(os.getpid(), signal.SIGTERM)
            return real(*args, **kwargs)

        training.F = type("F", (), {"cross_entropy": staticmethod(cross_entropy)})
    try:
        training.train_classifier(model, batches, None, torch.device("cpu"), **options)
    finally:
        training.F = F
    return model


def test_teacher_training_resumes_bitwise_mid_epoch(tmp_path):
    expected = _train(tmp_path / "ref").state_dict()
    done = 0
    for at_step in (3, 6, 13):  # inside epoch 1, at its last batch, inside epoch 3
        with pytest.raises(Interrupted, match=f"after step {at_step} "):
            _train(tmp_path / "run", resume=done > 0, kill_at=at_step - done)
        done = at_step
    model = _train(tmp_path / "run", resume=True)
    for name, value in model.state_dict().items():
        assert torch.equal(value, expected[name]), name


def test_teacher_training_skips_nan_then_stops(tmp_path):
    real = F.cross_entropy
    calls = [0]

    def sometimes_nan(*args, **kwargs):
        calls[0] += 1
        loss = real(*args, **kwargs)
        return loss * float("nan") if calls[0] in (2, 3) or calls[0] > 10 else loss

    # Steps 2 and 3 are skipped; from step 11 on every step is: checked at steps 12 (2 in a row) and 16 (6).
    training.F = type("F", (), {"cross_entropy": staticmethod(sometimes_nan)})
    try:
        with pytest.raises(DatafreeError, match=r"6 steps in a row .*by step 16 \(8 skipped in all; .*ce \(8 steps\).*last good checkpoint is "
                                                r".*state_last.pt"):
            _train(tmp_path, max_nonfinite=3)
    finally:
        training.F = F
    assert torch.load(tmp_path / "state_last.pt", weights_only=True)["step"] == 8


def test_a_time_budget_spent_at_an_epoch_boundary_ends_training_cleanly(tmp_path, monkeypatch):
    """The budget runs out just as epoch 3 begins: two epochs count, and no empty epoch is averaged (0/0)."""
    data = make_shapes(64, image_size=8, seed=0)
    batches = DeviceBatches(data, batch_size=16, shuffle=True, drop_last=True, seed=3)
    clock = [0.0]
    monkeypatch.setattr(loop_module.time, "perf_counter", lambda: clock[0])

    class Epochs:  # one epoch of batches per iteration; the clock passes the budget when epoch 3 starts
        epochs = 0

        def __len__(self):
            return len(batches)

        def __iter__(self):
            self.epochs += 1
            if self.epochs == 3:
                clock[0] = 100.0
            return iter(batches)

    model = create_model("microcnn", num_classes=10)
    result = training.train_classifier(model, Epochs(), batches, torch.device("cpu"), epochs=5, lr=0.05, amp=False,
                                       progress=False, time_budget_s=50.0)
    assert result["epochs"] == 2 and 0.0 <= result["test_accuracy"] <= 1.0
