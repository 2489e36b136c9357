"""benchmarks/cpu_layout.py's generator table: every row timed with the same batch and repetitions."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def load_script():
    spec = importlib.util.spec_from_file_location("cpu_layout", REPO / "benchmarks/cpu_layout.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("device, batch, reps", [("cpu", None, 4), ("cuda", 256, 200)])
def test_every_generator_row_is_timed_alike(monkeypatch, capsys, device, batch, reps):
    script = load_script()
    timed = []

    class Unbuilt:  # no generator is built or run: only what each row asks to time is recorded
        def to(self, _device):
            return self

    monkeypatch.setattr(script, "create_model", lambda *args, **kwargs: Unbuilt())
    monkeypatch.setattr(script, "generator_step_seconds",
                        lambda net, b, channels_last, r: timed.append((b, r)) or 0.002)
    script.generators(4, device)
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| fast") or
            line.startswith("| dfad")]
    assert len(rows) == len(script.GENERATORS) and len(timed) == 3 * len(script.GENERATORS)
    assert {r for _, r in timed} == {reps}  # the GPU's 50x once, not compounded row after row
    expected = [b for _, _, b, _ in script.GENERATORS] if batch is None else [batch] * len(script.GENERATORS)
    assert [b for b, _ in timed[::3]] == expected
