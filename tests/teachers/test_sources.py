"""Every teacher source loads the same network to the same outputs."""
import warnings

import pytest
import torch
from torch import nn

from nets import TinyBNNet, calibrated_bn_net
from datafree.errors import DatafreeError
from datafree.teachers import Ensemble, Teacher, load_teacher, teacher_from_config
from datafree.ops.hooks import BatchNormStatistics

X = torch.rand(5, 3, 8, 8)


def _reference():
    torch.manual_seed(3)
    return calibrated_bn_net(num_classes=4)


def _same_outputs(teacher: Teacher, net: nn.Module, mean=0.0, std=1.0):
    with torch.no_grad():
        assert torch.allclose(teacher.model(X), net((X - mean) / std), atol=1e-6)


def test_own_class_with_dataparallel_prefix_nested_under_state_dict(tmp_path):
    net = _reference()
    wrapped = nn.DataParallel(net)  # keys become "module.features.0.weight", ...
    torch.save({"epoch": 3, "state_dict": wrapped.state_dict()}, tmp_path / "w.pt")
    teacher = load_teacher("module", model={"_target_": "nets.TinyBNNet", "num_classes": 4},
                           checkpoint=str(tmp_path / "w.pt"), input_size=[3, 8, 8], mean=[0.5] * 3, std=[0.25] * 3)
    _same_outputs(teacher, net, 0.5, 0.25)
    assert teacher.info.arch == "nets.TinyBNNet" and teacher.info.num_classes == 4
    assert not any(p.requires_grad for p in teacher.model.parameters()) and not teacher.model.training
    assert any("4 logits" in note for note in teacher.notes)  # classes found by the probe, and said so


def test_own_class_instance_and_named_state_key(tmp_path):
    net = _reference()
    torch.save({"ema": net.state_dict(), "model": {"junk": 1}}, tmp_path / "w.pt")
    teacher = load_teacher("module", model=TinyBNNet(4), checkpoint=str(tmp_path / "w.pt"), state_key="ema",
                           input_size=[3, 8, 8])
    _same_outputs(teacher, net)
    with pytest.raises(DatafreeError, match="no key 'nope'.*teacher.state_key"):
        load_teacher("module", model=TinyBNNet(4), checkpoint=str(tmp_path / "w.pt"), state_key="nope")


def test_unimportable_target_says_pythonpath(tmp_path):
    torch.save(_reference().state_dict(), tmp_path / "w.pt")
    with pytest.raises(DatafreeError, match="cannot be imported.*PYTHONPATH"):
        load_teacher("module", model={"_target_": "no_such_pkg.Net"}, checkpoint=str(tmp_path / "w.pt"))
    with pytest.raises(DatafreeError, match="needs teacher.model"):
        load_teacher("module", checkpoint=str(tmp_path / "w.pt"))


def test_pickled_module_needs_trust_and_says_why(tmp_path):
    net = _reference()
    torch.save(net, tmp_path / "whole.pt")
    with pytest.raises(DatafreeError, match="unpickling them runs code.*trust_checkpoint=true"):
        load_teacher("module", checkpoint=str(tmp_path / "whole.pt"))
    teacher = load_teacher("module", checkpoint=str(tmp_path / "whole.pt"), trust_checkpoint=True, input_size=[3, 8, 8])
    _same_outputs(teacher, net)
    # With a class given, the pickled module's weights go into it.
    teacher = load_teacher("module", model=TinyBNNet(4), checkpoint=str(tmp_path / "whole.pt"), trust_checkpoint=True)
    _same_outputs(teacher, net)


def test_torchvision_model_with_local_weights_file(tmp_path):
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=7).eval()
    torch.save(net.state_dict(), tmp_path / "r18.pt")
    teacher = load_teacher("torchvision", name="resnet18", checkpoint=str(tmp_path / "r18.pt"), input_size=[3, 64, 64])
    assert teacher.info.num_classes == 7  # read from fc.weight
    assert teacher.info.mean == pytest.approx((0.485, 0.456, 0.406))  # torchvision's convention, noted
    assert any("7 classes" in n for n in teacher.notes) and any("ImageNet" in n or "torchvision" in n for n in teacher.notes)
    x = torch.rand(2, 3, 64, 64)
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(teacher.model(x), net((x - mean) / std), atol=1e-5)
    assert len(BatchNormStatistics(teacher.model).layers) == 20
    with pytest.raises(DatafreeError, match="no classification model 'resnet81'.*resnet18"):
        load_teacher("torchvision", name="resnet81", checkpoint=str(tmp_path / "r18.pt"))
    with pytest.raises(DatafreeError, match="does not match torchvision resnet34.*missing keys"):
        load_teacher("torchvision", name="resnet34", checkpoint=str(tmp_path / "r18.pt"))


def test_weights_in_a_safetensors_file_load_as_a_state_dict(tmp_path):
    """timm's and Hugging Face's weights come as model.safetensors: read by content (a renamed file too), with nothing
    to unpickle; a folder holding one names it; a damaged one or a missing package is one line."""
    import torchvision
    from safetensors.torch import save_file

    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=7).eval()
    (tmp_path / "hub").mkdir()
    save_file(net.state_dict(), str(tmp_path / "hub" / "model.safetensors"))
    (tmp_path / "renamed.pt").write_bytes((tmp_path / "hub" / "model.safetensors").read_bytes())
    x = torch.rand(2, 3, 32, 32)
    for path in (tmp_path / "hub" / "model.safetensors", tmp_path / "renamed.pt"):
        teacher = load_teacher("torchvision", name="resnet18", checkpoint=str(path), input_size=[3, 32, 32])
        assert teacher.info.num_classes == 7  # read from fc.weight, as from a .pth
        with torch.no_grad():
            assert torch.equal(teacher.model.model(x), net(x))
    with pytest.raises(DatafreeError, match=r"is a folder, not a file \(it holds model.safetensors\)"):
        load_teacher("torchvision", name="resnet18", checkpoint=str(tmp_path / "hub"))
    whole = (tmp_path / "hub" / "model.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DatafreeError, match="teacher.checkpoint .*cut.safetensors' cannot be read as a safetensors "
                                            "file .*damaged or incomplete"):
        load_teacher("torchvision", name="resnet18", checkpoint=str(tmp_path / "cut.safetensors"))


def test_a_safetensors_file_without_the_package_names_what_to_install(tmp_path, monkeypatch):
    import sys

    from safetensors.torch import save_file

    save_file(TinyBNNet(4).state_dict(), str(tmp_path / "model.safetensors"))
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)  # import now raises ImportError
    with pytest.raises(DatafreeError, match=r"is a safetensors file, which needs the safetensors package: pip install "
                                            r"safetensors \(timm brings it"):
        load_teacher("module", model=TinyBNNet(4), checkpoint=str(tmp_path / "model.safetensors"))


def test_training_scripts_checkpoints_load_as_they_are(tmp_path, caplog):
    """timm's train.py (its argparse.Namespace beside the weights), a Lightning module (every key under "model.", a
    loss's buffer beside them) and a distillation checkpoint holding the network twice (one error, then state_key)."""
    import argparse

    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=5).eval()
    own = net.state_dict()
    x = torch.rand(2, 3, 32, 32)
    torch.save({"epoch": 3, "arch": "resnet18", "state_dict": own, "optimizer": {}, "version": 2,
                "args": argparse.Namespace(model="resnet18", lr=0.1)}, tmp_path / "model_best.pth.tar")
    torch.save({"epoch": 3, "pytorch-lightning_version": "2.4.0", "hyper_parameters": {"lr": 0.1},
                "state_dict": {**{f"model.{k}": v for k, v in own.items()}, "loss_fn.weight": torch.ones(5)}},
               tmp_path / "last.ckpt")
    torch.save({"state_dict": own, "state_dict_ema": own, "args": argparse.Namespace(model="resnet18")},
               tmp_path / "with_ema.pth.tar")
    for name in ("model_best.pth.tar", "last.ckpt", "with_ema.pth.tar"):
        with caplog.at_level("INFO", logger="datafree"):
            teacher = load_teacher("torchvision", name="resnet18", checkpoint=str(tmp_path / name), input_size=[3, 32, 32])
        assert teacher.info.num_classes == 5  # the head found under the prefix too
        with torch.no_grad():
            assert torch.equal(teacher.model.model(x), net(x))
    assert "weights are those under 'model.' (as a Lightning module or a wrapper saves them); 1 other tensors are " \
           "left out" in caplog.text
    assert "with_ema.pth.tar': the weights under 'state_dict' are used; it also holds 'state_dict_ema', a running " \
           "average of them, often the better network: teacher.state_key=state_dict_ema takes it" in caplog.text
    assert caplog.text.count("also holds") == 1  # the file with an average alone
    torch.save({"state_dict": {**{f"student.{k}": v for k, v in own.items()},
                               **{f"teacher.{k}": torch.zeros_like(v) for k, v in own.items()}}}, tmp_path / "kd.pt")
    with pytest.raises(DatafreeError, match=r"holds this network 2 times, under 'student.', 'teacher.': choose one "
                                            r"with teacher.state_key=student. \(the prefix, with its dot\)"):
        load_teacher("torchvision", name="resnet18", checkpoint=str(tmp_path / "kd.pt"), input_size=[3, 32, 32])
    teacher = load_teacher("torchvision", name="resnet18", checkpoint=str(tmp_path / "kd.pt"), state_key="student.",
                           input_size=[3, 32, 32])
    with torch.no_grad():
        assert torch.equal(teacher.model.model(x), net(x))
    with pytest.raises(DatafreeError, match=r"holds no weights under 'pupil.' \(its keys start with student., teacher.\)"):
        load_teacher("torchvision", name="resnet18", checkpoint=str(tmp_path / "kd.pt"), state_key="pupil.")


def test_a_teacher_that_ends_in_a_softmax_is_distilled_through_the_logarithms_of_its_probabilities(tmp_path):
    """log(softmax(z)) = z - logsumexp(z): every softmax of it, at any temperature, is the raw logits' own."""
    from nets import SoftmaxNet

    torch.manual_seed(0)
    net = SoftmaxNet(4).eval()
    torch.save(net.state_dict(), tmp_path / "w.pt")
    teacher = load_teacher("module", model={"_target_": "nets.SoftmaxNet", "num_classes": 4},
                           checkpoint=str(tmp_path / "w.pt"), input_size=[3, 8, 8])
    assert any("returns probabilities (each row sums to 1: it ends in a softmax)" in n for n in teacher.notes)
    with torch.no_grad():
        raw = TinyBNNet.forward(net, X)
        for temperature in (1.0, 4.0):
            assert torch.allclose((teacher.model(X) / temperature).softmax(1), (raw / temperature).softmax(1), atol=1e-6)
    plain = load_teacher("module", model={"_target_": "nets.TinyBNNet", "num_classes": 4},
                         checkpoint=str(tmp_path / "w.pt"), input_size=[3, 8, 8])
    assert not plain.model.from_probabilities and not any("probabilities" in n for n in plain.notes)


def test_torchvision_default_input_is_224_rgb(tmp_path):
    import torchvision

    torch.save(torchvision.models.mobilenet_v3_small(num_classes=3).state_dict(), tmp_path / "m.pt")
    teacher = load_teacher("torchvision", name="mobilenet_v3_small", checkpoint=str(tmp_path / "m.pt"))
    assert teacher.info.input_size == (3, 224, 224) and teacher.info.num_classes == 3


def test_a_network_built_for_one_size_is_built_at_the_declared_size(tmp_path):
    """A ViT's position embeddings fix its input size: one trained at 32 px loads at teacher.input_size, and without
    it the error says to set that."""
    import timm

    torch.manual_seed(0)
    torch.save(timm.create_model("test_vit", num_classes=5, img_size=32).state_dict(), tmp_path / "vit32.pt")
    teacher = load_teacher("timm", name="test_vit", checkpoint=str(tmp_path / "vit32.pt"), input_size=[3, 32, 32])
    assert teacher.info.input_size == (3, 32, 32) and teacher.info.num_classes == 5
    with pytest.raises(DatafreeError, match=r"pos_embed.*teacher.input_size=\[channels, height, width\]"):
        load_teacher("timm", name="test_vit", checkpoint=str(tmp_path / "vit32.pt"))


def test_sizes_a_network_built_for_one_size_cannot_take():
    from datafree.models.sources import build_network, takes_image_size

    assert takes_image_size("torchvision", "vit_b_16") and takes_image_size("timm", "test_vit")
    assert not takes_image_size("torchvision", "resnet18") and not takes_image_size("timm", "test_resnet")
    with pytest.raises(DatafreeError, match="torchvision's vit_b_16 takes square images only.*32x48"):
        build_network("torchvision", name="vit_b_16", num_classes=3, image_size=(32, 48))
    with pytest.raises(DatafreeError, match=r"could not build 'vit_b_16' for 3 classes at 40x40 \(Input shape indivisible"):
        build_network("torchvision", name="vit_b_16", num_classes=3, image_size=(40, 40))
    net, _ = build_network("timm", name="test_resnet", num_classes=3, image_size=(40, 40))  # any size: built as it is
    assert net(torch.rand(1, 3, 40, 40)).shape == (1, 3)


def test_torchscript_archive(tmp_path):
    net = _reference()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(net), str(tmp_path / "t.ts"))
    teacher = load_teacher("torchscript", checkpoint=str(tmp_path / "t.ts"), input_size=[3, 8, 8])
    _same_outputs(teacher, net)
    assert teacher.info.num_classes == 4 and teacher.info.arch.startswith("torchscript:")
    assert any("hooks cannot attach" in n for n in teacher.notes)
    # A TorchScript file given as a checkpoint says which source to use.
    with pytest.raises(DatafreeError, match="TorchScript archive.*teacher.source=torchscript"):
        load_teacher("module", model=TinyBNNet(4), checkpoint=str(tmp_path / "t.ts"))
    (tmp_path / "junk.ts").write_bytes(b"junk")
    with pytest.raises(DatafreeError, match="not a TorchScript archive"):
        load_teacher("torchscript", checkpoint=str(tmp_path / "junk.ts"))


def test_datafree_checkpoint_carries_its_metadata(tmp_path):
    from datafree.models import create_model
    from datafree.teachers import ClassifierInfo, save_classifier

    net = create_model("microcnn", num_classes=10).eval()
    info = ClassifierInfo("microcnn", 10, (3, 16, 16), (0.4,) * 3, (0.2,) * 3, classes=[str(i) for i in range(10)],
                          test_accuracy=0.5)
    save_classifier(tmp_path / "t.pt", net, info)
    teacher = load_teacher(checkpoint=str(tmp_path / "t.pt"))
    assert teacher.info.input_size == (3, 16, 16) and teacher.info.mean == (0.4,) * 3
    assert teacher.info.test_accuracy == 0.5 and teacher.notes == []  # nothing had to be guessed


def test_a_datafree_checkpoint_given_to_its_own_torchvision_network_keeps_its_size_and_normalisation(tmp_path):
    """train-teacher's teacher.pt of a torchvision network (grey, 56x72, normalised), loaded with teacher=torchvision
    teacher.name=... as the docs name it: the file's input size, mean, std and classes, not 224 px and [0, 1] pixels."""
    import torchvision
    from datafree.teachers import ClassifierInfo, save_classifier

    net = torchvision.models.resnet18(num_classes=3)
    net.conv1 = nn.Conv2d(1, 64, 7, 2, 3, bias=False)
    path = str(save_classifier(tmp_path / "teacher.pt", net.eval(), ClassifierInfo(
        "torchvision:resnet18", 3, (1, 56, 72), (0.5,), (0.25,), classes=["benign", "malign", "normal"])))
    teacher = load_teacher("torchvision", name="resnet18", checkpoint=path)
    assert teacher.info.input_size == (1, 56, 72) and teacher.info.mean == (0.5,) and teacher.info.std == (0.25,)
    assert teacher.info.classes == ["benign", "malign", "normal"]
    assert not any("not given" in n or "inferred" in n for n in teacher.notes), teacher.notes


@pytest.mark.parametrize("source", ["torchvision", "module"])
def test_a_datafree_checkpoint_of_another_network_is_loaded_with_teacher_checkpoint(tmp_path, source):
    """A teacher.pt given to a torchvision or module teacher that is not its network: the message names the network
    this run builds as such, and says that teacher=checkpoint builds the file's."""
    from datafree.models import create_model
    from datafree.teachers import ClassifierInfo, save_classifier

    path = str(save_classifier(tmp_path / "t.pt", create_model("microcnn", num_classes=4),
                               ClassifierInfo("microcnn", 4, (3, 8, 8), (0.5,) * 3, (0.25,) * 3)))
    built = ("torchvision:mobilenet_v3_small" if source == "torchvision" else "nets.TinyBNNet")
    with pytest.raises(DatafreeError) as refused:
        if source == "torchvision":
            load_teacher("torchvision", name="mobilenet_v3_small", checkpoint=path)
        else:
            load_teacher("module", model={"_target_": "nets.TinyBNNet", "num_classes": 4}, checkpoint=path)
    assert str(refused.value).endswith(
        f"This run builds the teacher {built}, and the file is a datafree checkpoint of microcnn: teacher=checkpoint "
        f"teacher.checkpoint={path} builds that (it reads the network from the file: leave teacher.arch out)."), \
        str(refused.value)


def test_a_zoo_network_from_another_scripts_file_takes_the_state_key_too(tmp_path):
    """teacher=resnet34-style recipes (source datafree) read a bare file by teacher.arch, and teacher.state_key
    chooses the weights in it, a prefix included."""
    from datafree.models import create_model

    torch.manual_seed(0)
    net = create_model("microcnn", num_classes=10).eval()
    other = create_model("microcnn", num_classes=10).eval()
    torch.save({"acc": 0.9, "models": {**{f"teacher.{k}": v for k, v in net.state_dict().items()},
                                       **{f"student.{k}": v for k, v in other.state_dict().items()}}}, tmp_path / "kd.pt")
    with pytest.raises(DatafreeError, match="holds no state dict of tensors .*set teacher.state_key"):
        load_teacher("datafree", checkpoint=str(tmp_path / "kd.pt"), arch="microcnn", num_classes=10, input_size=[3, 8, 8])
    torch.save({"acc": 0.9, "net": {**{f"teacher.{k}": v for k, v in net.state_dict().items()},
                                    **{f"student.{k}": v for k, v in other.state_dict().items()}}}, tmp_path / "kd.pt")
    teacher = load_teacher("datafree", checkpoint=str(tmp_path / "kd.pt"), arch="microcnn", num_classes=10,
                           input_size=[3, 8, 8], state_key="teacher.")
    with torch.no_grad():
        assert torch.equal(teacher.model.model(X), net(X))


def _member(tmp_path, seed, name):
    torch.manual_seed(seed)
    net = calibrated_bn_net(num_classes=4)
    torch.save(net.state_dict(), tmp_path / name)
    return net, {"source": "module", "model": {"_target_": "nets.TinyBNNet", "num_classes": 4},
                 "checkpoint": str(tmp_path / name), "input_size": [3, 8, 8]}


def test_ensemble_averages_logits_and_sums_bn_losses(tmp_path):
    from omegaconf import OmegaConf

    a, node_a = _member(tmp_path, 1, "a.pt")
    b, node_b = _member(tmp_path, 2, "b.pt")
    node = OmegaConf.create({"source": "ensemble", "members": [node_a, node_b]})
    teacher = teacher_from_config(node)
    assert isinstance(teacher.model, Ensemble) and teacher.info.num_classes == 4
    with torch.no_grad():
        assert torch.allclose(teacher.model(X), (a(X) + b(X)) / 2, atol=1e-6)
    # The BN loss covers both members' layers; each member's first layer gets the multiplier.
    single = [load_teacher(**{k: v for k, v in n.items()}) for n in (node_a, node_b)]
    with BatchNormStatistics(teacher.model, first_multiplier=3.0) as both, torch.no_grad():
        teacher.model(X)
        total = both.loss()
    parts = []
    for member in single:
        with BatchNormStatistics(member.model, first_multiplier=3.0) as stats, torch.no_grad():
            member.model(X)
            parts.append(stats.loss())
    assert total.item() == pytest.approx(sum(p.item() for p in parts), rel=1e-5)


def test_ensemble_members_must_agree(tmp_path):
    _, node_a = _member(tmp_path, 1, "a.pt")
    torch.save(TinyBNNet(5).state_dict(), tmp_path / "c.pt")
    node_c = dict(node_a, model={"_target_": "nets.TinyBNNet", "num_classes": 5}, checkpoint=str(tmp_path / "c.pt"))
    with pytest.raises(DatafreeError, match="share classes and input size.*member 1: 5 classes"):
        load_teacher("ensemble", members=[node_a, node_c])
    with pytest.raises(DatafreeError, match="at least 2"):
        load_teacher("ensemble", members=[node_a])
    with pytest.raises(DatafreeError, match="ensemble member 1: .*does not exist"):
        load_teacher("ensemble", members=[node_a, dict(node_a, checkpoint=str(tmp_path / "gone.pt"))])


def test_unknown_source_and_recipe_keys():
    from omegaconf import OmegaConf

    with pytest.raises(DatafreeError, match="unknown teacher.source 'onnx'"):
        load_teacher("onnx")
    with pytest.raises(DatafreeError, match=r"unknown key\(s\) \['checkpont'\]"):
        teacher_from_config(OmegaConf.create({"source": "datafree", "checkpont": "x.pt"}))


def test_weights_saved_with_a_few_notes_beside_them_load_without_the_notes(tmp_path, caplog):
    # torch.save({**model.state_dict(), "epoch": 3, "arch": "microcnn"}): the tensors are the weights
    from datafree.models import create_model

    caplog.set_level("INFO", logger="datafree")
    torch.manual_seed(0)
    net = create_model("microcnn", num_classes=10).eval()
    torch.save({**net.state_dict(), "epoch": 3, "arch": "microcnn"}, tmp_path / "w.pt")
    teacher = load_teacher("datafree", checkpoint=str(tmp_path / "w.pt"), arch="microcnn", num_classes=10,
                           input_size=[3, 8, 8])
    with torch.no_grad():
        assert torch.equal(teacher.model.model(X), net(X))
    assert "2 entries beside the weights are not tensors and are left out (epoch, arch)" in caplog.text
