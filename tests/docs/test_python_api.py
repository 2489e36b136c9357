"""docs/python_api.md's Python block, run verbatim in an empty folder that holds a teacher.pt."""
import subprocess
import sys

import pytest
import torch

from markdown_blocks import blocks
from datafree.data import build_dataset
from datafree.models import create_model
from datafree.teachers import ClassifierInfo, Normalized, save_classifier
from datafree.training import train_classifier
from datafree.data import DeviceBatches


def _quick_teacher(path):
    """A tinycnn trained briefly on shapes: the page's 'any datafree checkpoint'."""
    torch.manual_seed(0)
    train = build_dataset(kind="shapes", split="train", n=3000, image_size=16)
    model = Normalized(create_model("tinycnn", num_classes=10), (0.5,) * 3, (0.25,) * 3)
    train_classifier(model, DeviceBatches(train, 100, shuffle=True, augment=True, drop_last=True, seed=0), None,
                     torch.device("cpu"), epochs=2, lr=0.05, label_smoothing=0.0, progress=False)
    save_classifier(path, model, ClassifierInfo("tinycnn", 10, (3, 16, 16), (0.5,) * 3, (0.25,) * 3, classes=train.classes))


@pytest.mark.long(35)
def test_python_api_block(tmp_path):
    (code,) = [body for kind, _, body in blocks("docs/python_api.md") if kind == "python"]
    _quick_teacher(tmp_path / "teacher.pt")
    (tmp_path / "snippet.py").write_text(code)
    proc = subprocess.run([sys.executable, "snippet.py"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    accuracy = float(proc.stdout.split("student accuracy ")[1].split("%")[0])
    assert accuracy > 15, proc.stdout  # chance is 10%
    assert "distill: 100%" in proc.stderr, proc.stderr[-2000:]  # the API shows its progress by default, as the CLI does
    student = torch.load(tmp_path / "student.pt", weights_only=True)
    assert student["arch"] == "microcnn" and abs(student["test_accuracy"] - accuracy / 100) < 1e-3
