"""docs/custom_teacher.md, run exactly as written, in an empty folder outside the package."""
import pytest
import torch

from markdown_blocks import blocks, play


@pytest.mark.long(35)
def test_guide_commands_distil_a_user_teacher(tmp_path):
    steps = blocks("docs/custom_teacher.md")
    assert [k for k, _, _ in steps] == ["file", "file", "run", "file", "run"]
    final = play(steps, tmp_path)[-1]
    assert "teacher my_models.ShapesNet: test accuracy" in final
    assert "the teacher returns 10 logits per image" in final  # what was inferred is said
    teacher_acc = float(final.split("teacher my_models.ShapesNet: test accuracy ")[1].split("%")[0])
    assert teacher_acc > 70, final
    student = torch.load(tmp_path / "outputs/my_teacher/student.pt", weights_only=True)
    assert student["arch"] == "microcnn" and student["input_size"] == [3, 16, 16]
    assert student["extra"]["teacher_arch"] == "my_models.ShapesNet"
