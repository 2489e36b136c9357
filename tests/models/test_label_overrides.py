"""A checkpoint's network label (its arch) as the overrides that build that network, for a student or a teacher:
what a message tells the user to type must compose and build it."""
import pytest
from hydra import compose, initialize_config_module

from datafree.models import create_model, list_models
from datafree.models.sources import label_overrides
from datafree.errors import DatafreeError


def _zoo_classifiers():
    names = []
    for name in list_models():
        try:
            create_model(name, num_classes=10, in_channels=3)
        except DatafreeError:  # a generator: no checkpoint of a classifier names it
            continue
        names.append(name)
    return names


@pytest.mark.parametrize("what", ["student", "teacher"])
def test_every_zoo_label_is_overrides_that_build_it(what):
    recipe = "distill" if what == "student" else "train_teacher"
    for name in _zoo_classifiers():
        overrides = label_overrides(name, what).split()
        with initialize_config_module("datafree.recipes", version_base="1.3"):
            cfg = compose(recipe, overrides=overrides)
        assert cfg[what].arch == name and cfg[what].get("source", "datafree") == "datafree", overrides
        if what == "teacher":  # train-teacher reads its training settings there
            assert cfg.teacher.train.epochs > 0, overrides


@pytest.mark.parametrize("label, student, teacher", [
    ("torchvision:resnet18", "student=torchvision student.name=resnet18", "teacher=torchvision teacher.name=resnet18"),
    ("timm:resnet18", "student=timm student.name=resnet18", "teacher=timm teacher.name=resnet18"),
    ("wrn16_2", "student=wrn16_2", "teacher=wrn16_2"),
    ("resnet34", "student=resnet18 student.arch=resnet34", "teacher=resnet34"),
    ("tinycnn", "student=tinycnn", "teacher=resnet18 teacher.arch=tinycnn"),  # teacher/tinycnn_shapes is the demo's
    ("my_pkg.MyNet", "student=module student.model._target_=my_pkg.MyNet",
     "teacher=module teacher.model._target_=my_pkg.MyNet"),
])
def test_labels_as_overrides(label, student, teacher):
    assert label_overrides(label, "student") == student and label_overrides(label, "teacher") == teacher
