"""docs/any_network.md, run exactly as written in an empty folder: a torchvision ResNet-18 teacher fine-tuned from a checkpoint
on grey images, distilled into a torchvision and a timm student with experiment=fast. About 40 s: slow (the same
sources, fine-tuning and students run in the default suite in tests/test_cli_students.py)."""
import pytest
import torch

from markdown_blocks import blocks, play


@pytest.mark.slow
def test_the_walk_through_fine_tunes_a_teacher_and_distils_two_students(tmp_path):
    steps = blocks("docs/any_network.md")
    assert [k for k, _, _ in steps] == ["file", "run"]
    printed = play(steps, tmp_path)[-1]
    assert "teacher torchvision:resnet18: test accuracy" in printed
    assert "crop_padding=auto: 4 pixels for 32x32 images" in (tmp_path / "outputs/timm_student/distill.log").read_text()
    for run, label in (("torchvision_student", "torchvision:mobilenet_v3_small"), ("timm_student", "timm:test_efficientnet")):
        student = torch.load(tmp_path / "outputs" / run / "student.pt", weights_only=True)
        assert student["arch"] == label and student["input_size"] == [1, 32, 32] and student["num_classes"] == 2
    teacher = (tmp_path / "outputs/teacher/train-teacher.log").read_text()
    assert "is for 1000 classes; it starts fresh for 2" in teacher and "takes 3 channels; summed into the network's 1 (grey)" in teacher
    accuracy = float(printed.split("teacher torchvision:resnet18: test accuracy ")[1].split("%")[0])
    assert accuracy > 90, printed  # bright against dark: a teacher that learnt
