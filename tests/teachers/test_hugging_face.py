"""Networks as Hugging Face transformers gives them: logits inside an output object, class names and preprocessing in
their folder. Read by duck typing (tests/nets.py's LikeTransformers), and once with transformers itself where it is
installed."""
import json

import pytest
import torch

from nets import ClassifierOutput, LikeTransformers, TinyBNNet
from datafree.teachers import load_teacher
from datafree.teachers.hugging_face import class_names, logits_field, preprocessing

X = torch.rand(2, 3, 8, 8)


def _folder(tmp_path, **saved):
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(saved))
    return str(tmp_path)


def test_the_logits_field_is_found_in_output_objects_and_dicts_only():
    logits = torch.zeros(2, 3)
    assert logits_field(ClassifierOutput(logits=logits)) == "logits"
    assert logits_field({"logits": logits}) == "logits"
    assert logits_field(type("Out", (), {"logits": logits})()) == "logits"
    for output in (logits, (logits, logits), {"scores": logits}, {"logits": [1, 2]}, None):
        assert logits_field(output) is None


def test_class_names_come_from_id2label_unless_they_are_placeholders():
    assert class_names(LikeTransformers(3, labels=["cat", "dog", "fox"])) == ["cat", "dog", "fox"]
    assert class_names(LikeTransformers(3)) == []  # LABEL_0, LABEL_1, LABEL_2: nobody named them
    assert class_names(TinyBNNet(3)) == []
    net = LikeTransformers(2)
    net.config.id2label = {"1": "b", "0": "a"}  # keys as strings, out of order, as config.json keeps them
    assert class_names(net) == ["a", "b"]
    net.config.id2label = {0: "a", 2: "c"}  # not every class
    assert class_names(net) == []


@pytest.mark.parametrize("saved, expected", [
    ({"image_mean": [0.5, 0.4, 0.3], "image_std": [0.2, 0.2, 0.2], "size": {"shortest_edge": 224}},
     {"mean": (0.5, 0.4, 0.3), "std": (0.2, 0.2, 0.2), "input_size": (3, 224, 224)}),
    ({"image_mean": [0.5] * 3, "image_std": [0.5] * 3, "size": {"height": 96, "width": 128}},
     {"mean": (0.5,) * 3, "std": (0.5,) * 3, "input_size": (3, 96, 128)}),
    # resized to 256, then cropped: the crop is what the network sees
    ({"size": {"shortest_edge": 256}, "do_center_crop": True, "crop_size": {"height": 224, "width": 224},
      "image_mean": [0.5] * 3, "image_std": [0.5] * 3}, {"mean": (0.5,) * 3, "std": (0.5,) * 3, "input_size": (3, 224, 224)}),
    ({"do_normalize": False, "size": 64}, {"mean": (0.0,) * 3, "std": (1.0,) * 3, "input_size": (3, 64, 64)}),
    ({"image_mean": [0.5], "image_std": [0.5]}, {}),  # one value for three channels: not used
])
def test_preprocessing_is_read_from_the_folder_the_network_came_from(tmp_path, saved, expected):
    found = preprocessing(LikeTransformers(3, folder=_folder(tmp_path, **saved)))
    assert found == {"name": "its preprocessor_config.json", **expected}


def test_no_folder_no_file_or_a_damaged_file_is_no_preprocessing(tmp_path):
    assert preprocessing(TinyBNNet(3)) == {}
    assert preprocessing(LikeTransformers(3, folder=str(tmp_path))) == {}
    assert preprocessing(LikeTransformers(3, folder="hub-user/some-model")) == {}  # a hub name: nothing on disk
    (tmp_path / "preprocessor_config.json").write_text("{not json")
    assert preprocessing(LikeTransformers(3, folder=str(tmp_path))) == {}


def test_a_teacher_that_returns_an_output_object_is_read_through_its_logits(tmp_path):
    torch.manual_seed(0)
    folder = _folder(tmp_path, image_mean=[0.5] * 3, image_std=[0.25] * 3, size={"height": 8, "width": 8})
    net = LikeTransformers(3, folder=folder, labels=["cat", "dog", "fox"]).eval()
    torch.save(net.state_dict(), tmp_path / "w.pt")
    teacher = load_teacher("module", model={"_target_": "nets.LikeTransformers", "num_classes": 3, "folder": folder,
                                            "labels": ["cat", "dog", "fox"]}, checkpoint=str(tmp_path / "w.pt"))
    info = teacher.info
    assert (info.input_size, info.mean, info.std) == ((3, 8, 8), (0.5,) * 3, (0.25,) * 3)
    assert info.classes == ["cat", "dog", "fox"] and teacher.model.logits_field == "logits"
    assert any("returns a ClassifierOutput: its 'logits' are read as the teacher's logits" in n for n in teacher.notes)
    with torch.no_grad():
        assert torch.equal(teacher.model(X), net((X - 0.5) / 0.25).logits)
    plain = load_teacher("module", model={"_target_": "nets.TinyBNNet", "num_classes": 3},
                         checkpoint=str(tmp_path / "w.pt"), input_size=[3, 8, 8])
    assert plain.model.logits_field is None and not any("'logits'" in n for n in plain.notes)


def test_a_transformers_classifier_from_its_folder(tmp_path):
    """The real thing, where transformers is installed (it is not one of datafree's requirements)."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic",
                                       num_labels=2, id2label={0: "normal", 1: "pneumonia"})
    net = transformers.ResNetForImageClassification(config).eval()
    net.save_pretrained(tmp_path)
    _folder(tmp_path, image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225], size={"shortest_edge": 32},
            do_normalize=True)
    teacher = load_teacher("module", checkpoint=None, model={
        "_target_": "transformers.AutoModelForImageClassification.from_pretrained",
        "pretrained_model_name_or_path": str(tmp_path)})
    info = teacher.info
    assert (info.num_classes, info.input_size, info.classes) == (2, (3, 32, 32), ["normal", "pneumonia"])
    images = torch.rand(2, 3, 32, 32)
    mean, std = torch.tensor(info.mean).view(1, 3, 1, 1), torch.tensor(info.std).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(teacher.model(images), net((images - mean) / std).logits)


def test_a_checkpoint_of_a_transformers_network_says_to_load_it_from_its_folder(tmp_path):
    """train-teacher's teacher.pt of a transformers network names the factory that built it, which needs the folder."""
    from datafree.errors import DatafreeError
    from datafree.teachers import ClassifierInfo, Normalized, save_classifier

    arch = "transformers.AutoModelForImageClassification.from_pretrained"
    info = ClassifierInfo(arch=arch, num_classes=3, input_size=(3, 8, 8), mean=(0.5,) * 3, std=(0.25,) * 3)
    path = save_classifier(tmp_path / "teacher.pt", Normalized(LikeTransformers(3), info.mean, info.std), info)
    with pytest.raises(DatafreeError, match=r"load it with teacher=transformers teacher.name=DIR \(the folder it was "
                                            r"made from.*teacher.checkpoint="):
        load_teacher("datafree", checkpoint=str(path))
    # a class of the user's keeps its own advice
    info = ClassifierInfo(arch="nets.TinyBNNet", num_classes=3, input_size=(3, 8, 8), mean=(0.5,) * 3, std=(0.25,) * 3)
    path = save_classifier(tmp_path / "own.pt", Normalized(TinyBNNet(3), info.mean, info.std), info)
    with pytest.raises(DatafreeError, match=r"load it with teacher=module teacher.model._target_=nets.TinyBNNet"):
        load_teacher("datafree", checkpoint=str(path))
