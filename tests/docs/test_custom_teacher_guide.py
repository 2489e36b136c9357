"""docs/custom_teacher.md, run exactly as written, in an empty folder outside the package."""
import os
import subprocess
import sys
from pathlib import Path

import torch

from markdown_blocks import blocks


def test_guide_commands_distil_a_user_teacher(tmp_path):
    steps = blocks("docs/custom_teacher.md")
    assert [k for k, _, _ in steps] == ["file", "file", "run", "file", "run"]
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    env.pop("PYTHONPATH", None)
    outputs = []
    for kind, path, body in steps:
        if kind == "file":
            (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / path).write_text(body)
            continue
        proc = subprocess.run(body, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"{body}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
        outputs.append(proc.stdout + proc.stderr)
    final = outputs[-1]
    assert "teacher my_models.ShapesNet: test accuracy" in final
    assert "the teacher returns 10 logits per image" in final  # what was inferred is said
    teacher_acc = float(final.split("teacher my_models.ShapesNet: test accuracy ")[1].split("%")[0])
    assert teacher_acc > 70, final
    student = torch.load(tmp_path / "outputs/my_teacher/student.pt", weights_only=True)
    assert student["arch"] == "microcnn" and student["input_size"] == [3, 16, 16]
    assert student["extra"]["teacher_arch"] == "my_models.ShapesNet"
