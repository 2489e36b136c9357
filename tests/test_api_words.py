"""The Python API's errors name the caller's arguments, not the command line's recipe keys."""
import pytest

import datafree
from datafree import DatafreeError
from datafree.api_words import NODE_KEYS, argument_words
from datafree.synthesizers import NoiseSynthesizer


def test_recipe_keys_of_the_calls_groups_become_argument_names_and_nothing_else_does():
    said = ("teacher.checkpoint 'runs/a/teacher.pt' does not exist: set teacher=timm teacher.name=resnet18 "
            "teacher.model._target_=pkg.Net, or lower trainer.batch_size (student.name stays)")
    assert argument_words(said, {"teacher": NODE_KEYS}) == (
        "checkpoint 'runs/a/teacher.pt' does not exist: set source='timm' name=resnet18 model=pkg.Net, or lower "
        "trainer.batch_size (student.name stays)")
    assert argument_words("trainer.lr and trainer.unknown_key", {"trainer": ("lr",)}) == "lr and trainer.unknown_key"
    # sub-keys and hydra's + have no argument of their own: left as they are
    kept = "+student.model.num_labels=4 and student.model.config.x"
    assert argument_words(kept, {"student": NODE_KEYS}) == kept


def test_load_teacher_says_name_and_checkpoint(tmp_path):
    with pytest.raises(DatafreeError, match=r"^load_teacher: torchvision has no classification model 'resnet5': set "
                                            r"name to one of \['resnet50'"):
        datafree.load_teacher("torchvision", name="resnet5")
    missing = tmp_path / "teacher.pt"
    with pytest.raises(DatafreeError, match=rf"^load_teacher: checkpoint '{missing}' does not exist: point checkpoint "
                                            "at the weights file"):
        datafree.load_teacher("datafree", checkpoint=str(missing))


def test_make_student_and_distill_student_say_their_own_arguments():
    teacher = datafree.load_teacher("torchvision", name="resnet18", num_classes=4, input_size=[3, 32, 32])
    with pytest.raises(DatafreeError, match=r"^make_student: torchvision has no classification model "
                                            r"'mobilenet_v3_larg': set name to one of \['mobilenet_v3_large'"):
        datafree.make_student("torchvision:mobilenet_v3_larg", teacher.info, "cpu")
    with pytest.raises(DatafreeError, match=r"^distill_student: batch_size must be auto or an int >= 1, got 0 \(int\): "
                                            r"set e\.g\. batch_size=256"):
        datafree.distill_student(teacher, "resnet18", NoiseSynthesizer(4), rounds=1, batch_size=0, progress=False)


def test_the_command_line_keeps_its_recipe_keys(tmp_path):
    from datafree.teachers import load_teacher  # what the CLI's jobs call

    with pytest.raises(DatafreeError, match=r"^torchvision has no classification model 'resnet5': set teacher\.name"):
        load_teacher("torchvision", name="resnet5")
