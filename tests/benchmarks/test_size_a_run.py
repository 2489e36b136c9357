"""benchmarks/size_a_run.py prices a round on the CPU too: the machine a user sizes a run on may have no GPU."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]


def test_a_round_is_priced_on_the_cpu():
    done = subprocess.run([sys.executable, str(REPO / "benchmarks/size_a_run.py"), "--teacher", "resnet18", "--student",
                           "microcnn", "--size", "16", "--batch", "4", "--g-steps", "1", "--student-steps", "1", "--reps",
                           "1", "--device", "cpu"], capture_output=True, text=True, cwd=REPO / "benchmarks")
    assert done.returncode == 0, done.stderr[-2000:]
    header, columns, row = done.stdout.splitlines()
    assert header.startswith("device: CPU (") and header.endswith("float32 (as distill runs on the CPU)")
    assert columns.split()[:2] == ["batch", "generator"]
    values = row.split()
    assert values[0] == "4" and len(values) == 8 and all(float(v) > 0 for v in values)  # set-up and first steps too


def test_the_generator_layout_can_be_set(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    from size_a_run import generator_layout

    from datafree.models import create_model
    from datafree.synthesizers import FastSynthesizer
    from datafree.teachers import freeze

    teacher = freeze(create_model("tinycnn", num_classes=10))

    def built(layout: str) -> bool:  # whether the bound synthesizer's generator came out channels_last
        synth = FastSynthesizer(batch_size=4, g_steps=1, cuda_graphs=False)
        with generator_layout(layout):
            synth.bind(teacher, create_model("microcnn", num_classes=10), 10, (3, 16, 16), torch.device("cpu"))
        weights = [m.weight for m in synth.generator.modules() if isinstance(m, torch.nn.Conv2d)]
        return all(w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous() for w in weights)

    assert built("rule") and built("channels_last")  # datafree's rule on the CPU: channels_last
    assert not built("nchw")
