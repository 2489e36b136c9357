"""Which network weights fit, when they do not fit the one named: searched in the named network's family, nearest
names first, within a time limit."""
import time

import pytest
import torch
import torchvision

from datafree.teachers import weights_fit
from datafree.models import create_model
from datafree.teachers.weights_fit import (_likest_families_first, families, family_candidates, family_fit, fit_change,
                                          network_fit, saved_network, shapes_of, timm_stem_and_head)


def _state(name, classes=10):
    with torch.device("meta"):  # shapes only
        return torchvision.models.get_model(name, num_classes=classes).state_dict()


def test_the_family_is_searched_nearest_names_first():
    names = family_candidates("torchvision", "resnet34")
    assert names[0] == "resnet34" and set(names[:5]) >= {"resnet18", "resnet50"}
    assert all("resnet" in n.replace("_", "") for n in names)  # resnext50_32x4d is not a resnet; wide_resnet50_2 is
    assert family_candidates("torchvision", "_odd") == [] and family_candidates("module", "resnet18") == []


def test_the_weights_are_named_by_the_network_they_fit_with_their_class_count():
    assert family_fit("torchvision", "resnet34", _state("resnet18", 7)) == "resnet18"
    # a Lightning module's or DDP's prefixes are looked through
    wrapped = {f"module.{k}": v for k, v in _state("mobilenet_v3_large").items()}
    assert family_fit("torchvision", "mobilenet_v3_small", wrapped) == "mobilenet_v3_large"
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
    assert family_fit("torchvision", "resnet18", held) == "resnet50"


def test_weights_of_the_other_source_are_named_with_the_overrides_that_build_them():
    timm = pytest.importorskip("timm")
    with torch.device("meta"):
        state = timm.create_model("efficientnet_b0", num_classes=10).state_dict()
    assert fit_change("torchvision:efficientnet_b1", state, "teacher", "OTHERWISE") == \
        "the weights are timm's efficientnet_b0: set teacher=timm teacher.name=efficientnet_b0"


def test_weights_that_name_no_network_are_found_in_the_zoo_or_torchvision():
    assert network_fit(create_model("resnet18", num_classes=7).state_dict()) == (["resnet18"], [], "")
    held = {f"model.{k}": v for k, v in _state("mobilenet_v3_small", 4).items()}  # a Lightning module's
    assert network_fit(held) == (["torchvision:mobilenet_v3_small"], [], "")
    assert network_fit({"conv.weight": torch.zeros(8, 3, 3, 3)}) == ([], [], "")  # no classifier to size
    # a classifier that is a 1x1 convolution (SqueezeNet's), auxiliary classifiers as torchvision saves them, and
    # the weights beside their running average (model_ema.: the loader then asks which)
    assert network_fit(_state("squeezenet1_1", 5))[0][0] == "torchvision:squeezenet1_1"
    with torch.device("meta"):
        googlenet = torchvision.models.googlenet(num_classes=6, aux_logits=True, init_weights=False).state_dict()
    assert network_fit(googlenet)[0] == ["torchvision:googlenet"]
    twice = {f"{p}{k}": v for p in ("model.", "model_ema.") for k, v in _state("resnet18", 3).items()}
    assert network_fit(twice)[0][0] == "torchvision:resnet18"


@pytest.mark.long(13)
def test_a_network_saved_beside_another_modules_tensors_is_found_under_its_prefix():
    # a distillation checkpoint: the student under "student.", a projection of the criterion's saved after it, whose
    # matrix would otherwise be read as the classifier (64 classes)
    held = {f"student.{k}": v for k, v in _state("resnet18", 5).items()} | {"criterion.proj.weight": torch.zeros(64, 512)}
    assert network_fit(held)[0][0] == "torchvision:resnet18"
    assert network_fit(held)[2] == "student."
    said = saved_network(held, "teacher", "w.pt", "load")
    assert said.startswith("those under 'student.' (beside 1 other tensor) fit torchvision's resnet18 with 5 classes: "
                           "load them with teacher=torchvision teacher.name=resnet18 teacher.state_key=student. "
                           "teacher.checkpoint=w.pt.")
    zoo = {f"net.{k}": v for k, v in create_model("resnet18", num_classes=3).state_dict().items()}
    zoo |= {"head2.weight": torch.zeros(7, 4), "head2.bias": torch.zeros(7)}
    assert saved_network(zoo, "student", "s.pt", "load") == ("those under 'net.' (beside 2 other tensors) fit the "
                                                              "zoo's resnet18 with 3 classes: set student.arch=resnet18 "
                                                              "student.state_key=net. student.num_classes=3.")


@pytest.mark.long(13)
def test_timm_weights_are_searched_in_their_own_family_first(monkeypatch):
    timm = pytest.importorskip("timm")
    with torch.device("meta"):
        state = timm.create_model("mobilenetv3_large_100", num_classes=5).state_dict()
    # 172 timm models name their stem conv_stem and their head classifier; the search builds the weights' family first
    alike = timm_stem_and_head(shapes_of(state))
    assert len(alike) > 100
    ordered = _likest_families_first(alike, shapes_of(state), time.process_time() + 60)
    assert ordered.index("mobilenetv3_large_100") < 40  # among the families whose keys are likest theirs
    monkeypatch.setattr(weights_fit, "NETWORK_SEARCH_S", 60.0)  # the outcome, not the time (a loaded CI machine)
    found, _, _ = network_fit(state)  # and its TensorFlow-padded namesake, whose shapes are the same
    assert found[0] == "timm:mobilenetv3_large_100" and "timm:tf_mobilenetv3_large_100" in found
    with torch.device("meta"):
        vit = timm.create_model("vit_small_patch16_224", num_classes=5).state_dict()
    monkeypatch.setattr(weights_fit, "NETWORK_SEARCH_S", 0.0)  # out of time: the families their stem and head name
    found, alike, _ = network_fit(vit)
    assert found == [] and "vit_small_patch16_224" in alike and families(alike).startswith("vit*")
    said = saved_network(vit, "teacher", "w.pt", "load")
    assert "no zoo or torchvision network fits them, nor a timm model within the 0 s searched. Their first " \
           "convolution and classifier are named as in" in said
    # a ViT saved at another size than its default has another pos_embed: the size is named as the way to build it
    assert said.endswith("name it with teacher=timm teacher.name=NAME teacher.input_size=[C,H,W].")


def test_a_models_family_is_its_first_word_without_the_size():
    from datafree.teachers.weights_fit import _family

    assert [_family(n) for n in ("resnet10t", "resnet50d", "mobilenetv3_large_100", "efficientnetv2_rw_s", "vit_small_patch16_224",
                                 "tf_efficientnet_b0", "regnety_002", "deit3_base_patch16_224")] == \
        ["resnet", "resnet", "mobilenetv3", "efficientnetv2", "vit", "tf", "regnety", "deit"]


def test_a_regnet_is_built_for_real_only_when_it_is_no_larger_than_the_weights():
    # torchvision's RegNets cannot be built on the meta device; built for real, regnet_y_128gf is 2.6 GB: the search
    # builds one on the CPU only where torchvision's own count of its parameters is no larger than the weights'
    from datafree.teachers.weights_fit import _built_shapes

    small = shapes_of(torchvision.models.regnet_y_400mf(num_classes=5).state_dict())
    started = time.process_time()
    assert _built_shapes("torchvision", "regnet_y_128gf", small) is None
    assert time.process_time() - started < 1.0
    assert _built_shapes("torchvision", "regnet_y_400mf", small) == small
    state = torchvision.models.regnet_x_400mf(num_classes=5).state_dict()
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    assert network_fit(state)[0] == ["torchvision:regnet_x_400mf"]
    assert torch.equal(torch.rand(3), expected)  # the real builds drew nothing from the random streams


def test_weights_of_no_known_network_are_told_to_load_into_the_users_class():
    state = {"conv.weight": torch.zeros(8, 3, 3, 3), "head.weight": torch.zeros(4, 8)}
    said = saved_network(state, "teacher", "w.pt", "load")
    assert said.startswith("no zoo, torchvision or timm network fits them: load them with teacher=module "
                           "teacher.model._target_=my_pkg.MyNet teacher.checkpoint=w.pt")
    assert saved_network({"conv.weight": torch.zeros(8, 3, 3, 3)}, "teacher", "w.pt", "load").startswith(
        "they hold no classifier (a last matrix or 1x1 convolution) to build a network for: load them with teacher=module")


@pytest.mark.long(16)
def test_networks_whose_weights_have_the_same_shapes_are_all_named():
    # timm's tf_efficientnet_b0 pads as TensorFlow does, efficientnet_b0 as PyTorch does: the same shapes, other
    # features. Weights that fit both are not loaded into one silently: the error names every one
    timm = pytest.importorskip("timm")
    with torch.device("meta"):
        state = timm.create_model("tf_efficientnet_b0", num_classes=10).state_dict()
    found, _, _ = network_fit(state)
    assert {"timm:efficientnet_b0", "timm:tf_efficientnet_b0"} <= set(found)
    said = saved_network(state, "teacher", "w.pt", "load")
    assert said.startswith(f"they fit timm's {found[0].split(':')[1]} with 10 classes: load them with teacher=timm ")
    assert "Their shapes are also those of timm's" in said and "tf_efficientnet_b0" in said
    # torchvision's resnet50: timm's resnet50 computes the same, its anti-aliased resnetaa50 does not
    found, _, _ = network_fit(_state("resnet50"))
    assert found[0] == "torchvision:resnet50" and "timm:resnetaa50" in found


def test_every_torchvision_family_names_its_first_tensor_alike():
    # The search builds no more of a torchvision family once its first member's first tensor is missing from the
    # weights: that holds only while every member of a family names its first tensor alike (a torchvision release
    # that breaks it fails here, not in a user's search)
    first = {}
    for name in torchvision.models.list_models(module=torchvision.models):
        try:
            own = weights_fit._built_shapes("torchvision", name, shapes_of(_state("resnet18", 7)))
        except Exception:  # noqa: BLE001
            own = None
        if own:
            first.setdefault(weights_fit._family(name), set()).add(next(iter(own)))
    assert len(first) >= 15 and all(len(keys) == 1 for keys in first.values()), first


def test_a_model_is_built_once_per_process_for_the_same_classes_and_channels(monkeypatch):
    # a search builds a timm family's first member to order the families and again to compare it, and an error's
    # message searches the weights its check searched: the same model is not built again
    built = []
    real = weights_fit.build_network
    monkeypatch.setattr(weights_fit, "build_network", lambda *a, **k: built.append(k["name"]) or real(*a, **k))
    weights_fit._shapes_when_built.cache_clear()
    seven, five = shapes_of(_state("resnet18", 7)), shapes_of(_state("resnet18", 5))
    assert weights_fit._built_shapes("torchvision", "resnet18", seven) == seven
    assert weights_fit._built_shapes("torchvision", "resnet18", seven) == seven
    assert weights_fit._built_shapes("torchvision", "resnet18", five) == five  # other classes: built
    assert built == ["resnet18", "resnet18"]
