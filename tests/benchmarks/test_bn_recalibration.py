"""benchmarks/bn_recalibration.py on a finished (tiny) distill run with the average: each student as saved, and
with its BatchNorm statistics re-estimated on the run's bank."""
from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

from test_cli import TINY, in_process

REPO = Path(__file__).resolve().parents[2]


def test_the_saved_students_score_what_the_run_measured(tmp_path, capsys):
    run = tmp_path / "run"
    proc = in_process(capsys, "distill", *TINY, "noise_baseline=false", "trainer.rounds=4", "trainer.ema_decay=0.5",
                      f"hydra.run.dir={run}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    done = subprocess.run([sys.executable, str(REPO / "benchmarks/bn_recalibration.py"), str(run), "--batches", "3", "2",
                           "--batch", "16", "--device", "cpu"], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {line.split("|")[1].strip(): [float(v.strip().rstrip("%")) for v in line.split("|")[2:-1]]
            for line in done.stdout.splitlines()[3:]}
    last = list(csv.DictReader((run / "summary.csv").open()))[-1]
    # As saved, each is the student the run's last evaluation measured (the same test split, read again); the table
    # prints percent to 2 decimals, summary.csv fractions to 4
    assert abs(rows["the weights (state_last.pt)"][0] - 100 * float(last["unaveraged_accuracy"])) < 0.006
    assert abs(rows["their average (student.pt)"][0] - 100 * float(last["student_accuracy"])) < 0.006
    assert all(len(row) == 3 and 0.0 <= v <= 100.0 for row in rows.values() for v in row)  # as saved, 3 and 2 batches


def test_the_reestimate_is_the_plain_mean_over_the_drawn_batches():
    """Every batch weighs the same (momentum None), whatever the layer's own momentum; the model given is untouched."""
    import importlib.util

    import torch

    from datafree.synthesizers.augment import Augment

    spec = importlib.util.spec_from_file_location("bn_recalibration", REPO / "benchmarks/bn_recalibration.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = torch.nn.Sequential(torch.nn.BatchNorm2d(3, momentum=0.5), torch.nn.Flatten()).eval()
    bank = torch.randint(0, 256, (40, 3, 4, 4), dtype=torch.uint8)
    same = Augment(jitter=0, flip=False)  # the identity: the batches are the drawn images themselves
    again = module.reestimate(model, bank, same, count=3, batch=8, device=torch.device("cpu"), seed=5)
    draws = torch.Generator().manual_seed(5)
    batches = [bank[torch.randint(len(bank), (8,), generator=draws)].float() / 255 for _ in range(3)]
    expected = torch.stack([b.mean(dim=(0, 2, 3)) for b in batches]).mean(0)
    assert torch.allclose(again[0].running_mean, expected, atol=1e-6)
    assert not again.training and torch.equal(model[0].running_mean, torch.zeros(3))  # the copy, not the model
