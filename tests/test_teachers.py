import pytest
import torch

from datafree.errors import DatafreeError
from datafree.models import create_model
from datafree.teachers import ClassifierInfo, Normalized, load_classifier, save_classifier


def _info(**kw):
    base = dict(arch="microcnn", num_classes=10, input_size=(3, 16, 16), mean=(0.5, 0.4, 0.3),
                std=(0.2, 0.25, 0.3), classes=[str(i) for i in range(10)], test_accuracy=0.875)
    base.update(kw)
    return ClassifierInfo(**base)


def test_checkpoint_round_trip_is_weights_only_readable(tmp_path):
    net = create_model("microcnn", num_classes=10)
    path = save_classifier(tmp_path / "t.pt", Normalized(net, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)), _info())
    blob = torch.load(path, weights_only=True)
    assert blob["arch"] == "microcnn" and blob["test_accuracy"] == 0.875 and blob["input_size"] == [3, 16, 16]
    model, info = load_classifier(path)
    assert info.mean == (0.5, 0.4, 0.3) and info.classes[3] == "3"
    x = torch.rand(2, 3, 16, 16)
    net.eval(), model.eval()
    expected = net((x - torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1)) / torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1))
    assert torch.allclose(model(x), expected, atol=1e-6)
    assert not list(tmp_path.glob("*.tmp"))  # atomic write leaves no temp file


def test_bare_state_dict_needs_arch(tmp_path):
    net = create_model("microcnn", num_classes=10)
    torch.save(net.state_dict(), tmp_path / "sd.pt")
    with pytest.raises(DatafreeError, match="bare state dict.*they fit the zoo's microcnn with 10 classes: set "
                                            "teacher.arch=microcnn teacher.num_classes=10"):
        load_classifier(tmp_path / "sd.pt")
    model, info = load_classifier(tmp_path / "sd.pt", arch="microcnn", num_classes=10)
    assert info.arch == "microcnn"
    model, info = load_classifier(tmp_path / "sd.pt", arch="microcnn")  # the classes counted from its classifier
    assert info.num_classes == 10


def test_mismatched_architecture_is_named(tmp_path):
    path = save_classifier(tmp_path / "t.pt", create_model("microcnn", num_classes=10), _info())
    # the checkpoint names its network: leaving the arch out builds it
    with pytest.raises(DatafreeError, match="does not match architecture 'tinycnn'.*the file is a datafree checkpoint of "
                                            "microcnn: .*leave teacher.arch out"):
        load_classifier(path, arch="tinycnn")
    torch.save(create_model("microcnn", num_classes=10).state_dict(), tmp_path / "bare.pt")  # one that does not
    with pytest.raises(DatafreeError, match="does not match architecture 'tinycnn'.*are a microcnn with 10 classes: "
                                            "set teacher.arch=microcnn"):
        load_classifier(tmp_path / "bare.pt", arch="tinycnn", num_classes=10)
    with pytest.raises(DatafreeError, match="shape mismatches"):
        load_classifier(path, num_classes=5)


def test_missing_and_unreadable_checkpoints(tmp_path):
    with pytest.raises(DatafreeError, match="does not exist"):
        load_classifier(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DatafreeError, match="cannot be read.*damaged or not a PyTorch checkpoint"):
        load_classifier(tmp_path / "junk.pt")


def test_bad_normalisation_is_refused():
    with pytest.raises(DatafreeError, match="one value per channel"):
        _info(mean=(0.5,))
    with pytest.raises(DatafreeError, match="positive"):
        _info(std=(0.2, 0.0, 0.3))
