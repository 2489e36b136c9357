"""Which network weights fit, when they do not fit the one named: searched in the named network's family, nearest
names first, within a time limit."""
import pytest
import torch
import torchvision

from datafree.teachers import weights_fit
from datafree.teachers.weights_fit import family_candidates, family_fit, fit_change


def _state(name, classes=10):
    with torch.device("meta"):  # shapes only
        return torchvision.models.get_model(name, num_classes=classes).state_dict()


def test_the_family_is_searched_nearest_names_first():
    names = family_candidates("torchvision", "resnet34")
    assert names[0] == "resnet34" and set(names[:5]) >= {"resnet18", "resnet50"}
    assert all("resnet" in n.replace("_", "") for n in names)  # resnext50_32x4d is not a resnet; wide_resnet50_2 is
    assert family_candidates("torchvision", "_odd") == [] and family_candidates("module", "resnet18") == []


def test_the_weights_are_named_by_the_network_they_fit_with_their_class_count():
    assert family_fit("torchvision", "resnet34", _state("resnet18", 7), "teacher") == "resnet18"
    # a Lightning module's or DDP's prefixes are looked through
    wrapped = {f"module.{k}": v for k, v in _state("mobilenet_v3_large").items()}
    assert family_fit("torchvision", "mobilenet_v3_small", wrapped, "student") == "mobilenet_v3_large"
    assert fit_change("torchvision:resnet34", _state("resnet18"), "student", "OTHERWISE") == \
        "the weights are torchvision's resnet18: set student.name=resnet18"


def test_weights_of_no_family_member_or_a_search_out_of_time_leave_the_general_advice(monkeypatch):
    assert fit_change("torchvision:resnet34", _state("vgg11"), "teacher", "OTHERWISE") == "OTHERWISE"
    assert fit_change("module:pkg.Net", _state("resnet18"), "teacher", "OTHERWISE") == "OTHERWISE"
    monkeypatch.setattr(weights_fit, "SEARCH_S", 0.0)  # a family of hundreds (timm's vit_*) stops at the limit
    assert fit_change("torchvision:resnet34", _state("resnet18"), "teacher", "OTHERWISE") == "OTHERWISE"


def test_a_lightning_modules_prefix_is_looked_through():
    # a Lightning module saves the network under "model." (with its other parts beside it)
    held = {f"model.{k}": v for k, v in _state("resnet50").items()}
    assert family_fit("torchvision", "resnet18", held, "teacher") == "resnet50"


def test_weights_of_the_other_source_are_named_with_the_overrides_that_build_them():
    timm = pytest.importorskip("timm")
    with torch.device("meta"):
        state = timm.create_model("efficientnet_b0", num_classes=10).state_dict()
    assert fit_change("torchvision:efficientnet_b1", state, "teacher", "OTHERWISE") == \
        "the weights are timm's efficientnet_b0: set teacher=timm teacher.name=efficientnet_b0"
