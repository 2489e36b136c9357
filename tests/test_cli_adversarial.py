"""The generator-based methods from the command line (in this process: the same code as the command, without an
interpreter start-up): one override switches the method."""
from test_cli import TINY, in_process

import torch

# TINY's synthesizer settings are DeepInversion's; the generator recipes take their own.
ADVERSARIAL_TINY = [a for a in TINY if not a.startswith("synthesizer.")] + ["synthesizer.batch_size=16"]


def test_tiny_dfad_distill_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    proc = in_process(capsys, "distill", "experiment=demo_dfad", *ADVERSARIAL_TINY, f"hydra.run.dir={out}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert "student microcnn: test accuracy" in proc.stdout
    blob = torch.load(out / "student.pt", weights_only=True)
    assert blob["arch"] == "microcnn" and blob["input_size"] == [3, 8, 8]
