"""datafree.ship.deploy: the written files compute what the PyTorch student computes, in their own engines, at any
batch size; data-free int8 stays close to float; deploy.json describes the files truly; refusals write nothing."""
import copy
import hashlib
import json
import sys
from pathlib import Path
from unittest.mock import ANY

import pytest
import torch
from torch import nn

from datafree.errors import DatafreeError
from datafree.ship.deploy import DeploySettings, deploy_student
from datafree.ship.runners import load_runner
from datafree.teachers import ClassifierInfo, Normalized

# The int8 student may lose at most this many points of test accuracy to float (docs/shipping.md states it).
INT8_POINTS = 3.0


@pytest.mark.parametrize("file, engine", [("student.onnx", "onnxruntime"), ("student.ts", "torchscript"),
                                          ("student.pt2", "torch.export")])
@pytest.mark.parametrize("batch", [1, 5])
def test_every_file_matches_pytorch_in_its_own_engine_at_any_batch_size(deployed, shapes_student, file, engine, batch):
    out, _ = deployed
    runner = load_runner(file, out / file, engine, threads=1)
    images = torch.rand(batch, 3, 16, 16, generator=torch.Generator().manual_seed(batch))  # [0, 1] pixels, unnormalised
    with torch.no_grad():
        expected = shapes_student.model(images)
    got = runner.logits(images)
    assert got.shape == expected.shape
    assert (got - expected).abs().max() < 1e-4
    assert torch.equal(got.argmax(1), expected.argmax(1))


def test_deploy_json_describes_the_files_truly(deployed, shapes_student):
    out, manifest = deployed
    assert json.loads((out / "deploy.json").read_text()) == manifest
    assert set(manifest["files"]) == {"student.onnx", "student.ts", "student.pt2", "student.int8.onnx"}
    for name, entry in manifest["files"].items():
        assert entry["sha256"] == hashlib.sha256((out / name).read_bytes()).hexdigest()
        assert entry["bytes"] == (out / name).stat().st_size
    assert manifest["files"]["student.onnx"]["opset"] >= 18
    assert manifest["input"]["shape"] == ["batch", 3, 16, 16] and manifest["input"]["value_range"] == [0.0, 1.0]
    assert manifest["student"]["classes"] == shapes_student.info.classes
    assert manifest["checked_on"] == {"synthetic": 128, "real": 128}
    assert sorted(p.name for p in out.iterdir()) == sorted([*manifest["files"], "deploy.json"])  # no staging left


def test_the_docs_state_the_int8_tolerance_the_tests_hold():
    assert f"within {INT8_POINTS:g} points of float" in (Path(__file__).parents[2] / "docs" / "shipping.md").read_text()


def test_int8_calibrated_on_synthetic_images_stays_within_the_stated_points(deployed):
    _, manifest = deployed
    int8 = manifest["int8"]
    assert int8["calibration"] == {"images": 128, "source": "synthetic only"}
    accuracy = int8["accuracy"]
    assert accuracy["float"] > 0.2  # a trained student, far above chance (10%): there is something to lose
    assert abs(accuracy["int8"] - accuracy["float"]) * 100 <= INT8_POINTS
    assert int8["bytes"]["int8_onnx"] < int8["bytes"]["float_onnx"]
    comparison = int8["calibration_comparison"]
    assert comparison["images"] == 128 and 0 <= comparison["real_calibrated"] <= 1
    assert "Sub" in int8["kept_float"]  # the input normalisation stays float


class _Gelu(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.head = nn.Conv2d(3, 8, 3), nn.Linear(8, 10)

    def forward(self, x):
        return self.head(nn.functional.gelu(self.conv(x)).mean((2, 3)))


def _info():
    return ClassifierInfo("custom", 10, (3, 16, 16), (0.5,) * 3, (0.25,) * 3)


def test_a_layer_the_quantiser_cannot_handle_is_named_and_kept_in_float(tmp_path, synthetic_images):
    lines = []
    settings = DeploySettings(formats=["onnx"], int8=True, int8_min_agreement=0.0, calibration_images=64,
                              check_images=32, latency=False)
    manifest = deploy_student(Normalized(_Gelu(), (0.5,) * 3, (0.25,) * 3).eval(), _info(), tmp_path,
                              synthetic=synthetic_images, settings=settings, log=lines.append)
    assert manifest["int8"]["kept_float"]["Gelu"] == 1
    assert any(line.startswith("int8: kept in float") and "Gelu x1" in line for line in lines)
    assert (tmp_path / "student.int8.onnx").is_file()


class _PreActivation(nn.Module):
    """A BatchNorm after a ReLU, as in a WRN's pre-activation blocks: no convolution to fold it into."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn, self.conv2, self.head = nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Conv2d(8, 8, 3), nn.Linear(8, 10)
        with torch.no_grad():  # channels of very different scales: one int8 scale for all would blur the small ones
            self.bn.weight.copy_(torch.logspace(-2, 1, 8))

    def forward(self, x):
        return self.head(self.conv2(torch.relu(self.bn(torch.relu(self.conv(x))))).mean((2, 3)))


def test_a_batchnorm_that_cannot_be_folded_is_quantised_per_channel_without_warnings(tmp_path, synthetic_images, caplog):
    import onnx

    settings = DeploySettings(formats=["onnx"], int8=True, int8_min_agreement=0.0, calibration_images=64,
                              check_images=32, latency=False)
    with caplog.at_level("WARNING"):
        deploy_student(Normalized(_PreActivation(), (0.5,) * 3, (0.25,) * 3).eval(), _info(), tmp_path,
                       synthetic=synthetic_images, settings=settings, log=lambda line: None)
    assert not [r.getMessage() for r in caplog.records if "out-of-range" in r.getMessage()]
    graph = onnx.load(str(tmp_path / "student.int8.onnx")).graph
    shapes = {i.name: list(i.dims) for i in graph.initializer}
    norm = next(n for n in graph.node if n.op_type == "BatchNormalization")
    scale = next(n for n in graph.node if n.op_type == "DequantizeLinear" and n.output[0] == norm.input[1])
    assert shapes[scale.input[1]] == [8]  # one int8 scale per channel
    assert [a.i for a in scale.attribute if a.name == "axis"] == [0]


def _hostile_to_int8(student) -> Normalized:
    """``student`` computing the same function, but with the input of its second convolution spanning three decades
    across channels: the first BatchNorm's channels scaled down, the next convolution's weights scaled up by as much
    (a ReLU and a max-pool commute with a positive scale). One uint8 scale for that input rounds the small channels
    away: a MobileNet's depthwise layers after BatchNorm folding, exaggerated."""
    model = copy.deepcopy(student.model)
    features, scales = model.model.features, torch.logspace(-3, 0, 16)
    with torch.no_grad():
        features[1].weight.mul_(scales)
        features[1].bias.mul_(scales)
        features[4].weight.div_(scales.view(1, 16, 1, 1))
    return model.eval()


def _int8_settings(**overrides) -> DeploySettings:
    return DeploySettings(**{"formats": ["onnx"], "int8": True, "calibration_images": 128, "check_images": 64,
                             "latency": False, **overrides})


def test_int8_keeps_the_layers_it_hurts_most_in_float_until_the_file_agrees(tmp_path, shapes_student,
                                                                           synthetic_images):
    import onnx

    model = _hostile_to_int8(shapes_student)
    images = torch.rand(8, 3, 16, 16)
    with torch.no_grad():
        assert (model(images) - shapes_student.model(images)).abs().max() < 1e-4  # the same student
    refused = tmp_path / "refused"
    with pytest.raises(DatafreeError, match=r"agrees with the PyTorch student on .*int8_min_agreement") as error:
        deploy_student(model, shapes_student.info, refused, synthetic=synthetic_images, real_test=shapes_student.test,
                       settings=_int8_settings(int8_float_layers=0), log=lambda line: None)
    assert "most sensitive" not in str(error.value)  # no search was asked for
    assert list(refused.iterdir()) == []

    lines = []
    manifest = deploy_student(model, shapes_student.info, tmp_path / "kept", synthetic=synthetic_images,
                              real_test=shapes_student.test, real_train=shapes_student.train,
                              settings=_int8_settings(), log=lines.append)
    int8 = manifest["int8"]
    assert int8["parity"]["agreement"] >= 0.9
    assert int8["float_layers"][0] == "features.4"  # the convolution whose input was made hostile comes first
    search = int8["sensitivity_search"]
    assert search["kept_in_float"] == int8["float_layers"] and search["layers_weighed"] == 3
    agreements = search["agreement_by_layers_in_float"]  # on the synthetic check images: the search sees no other
    assert agreements[0] < 0.9 and agreements[len(int8["float_layers"])] == max(agreements)
    without_test_images = deploy_student(model, shapes_student.info, tmp_path / "synthetic_only",
                                         synthetic=synthetic_images, settings=_int8_settings(), log=lambda line: None)
    assert without_test_images["int8"]["sensitivity_search"] == {**search, "seconds": ANY}  # chosen without them
    assert abs(int8["accuracy"]["int8"] - int8["accuracy"]["float"]) * 100 <= INT8_POINTS
    assert any(line.startswith("int8: kept in float the") and "features.4" in line for line in lines)
    weights = {i.name for i in onnx.load(str(tmp_path / "kept" / "student.int8.onnx")).graph.initializer}
    assert "model.features.4.weight" in weights and "model.features.4.weight_quantized" not in weights  # float
    assert any(name.endswith("_quantized") for name in weights)  # and the rest int8


def test_a_file_that_passes_but_agrees_less_than_sought_gets_the_search_unless_told_otherwise(tmp_path, shapes_student,
                                                                                          synthetic_images):
    model = _hostile_to_int8(shapes_student)
    kwargs = dict(synthetic=synthetic_images, real_test=shapes_student.test, log=lambda line: None)
    as_is = deploy_student(model, shapes_student.info, tmp_path / "as_is",
                           settings=_int8_settings(int8_min_agreement=0.3, int8_target_agreement=0.3), **kwargs)["int8"]
    assert as_is["float_layers"] == [] and "sensitivity_search" not in as_is
    assert 0.3 <= as_is["parity"]["agreement"] < 0.9  # written: it passes the minimum asked for
    sought = deploy_student(model, shapes_student.info, tmp_path / "sought",
                            settings=_int8_settings(int8_min_agreement=0.3), **kwargs)["int8"]  # default target 0.98
    assert sought["float_layers"] and sought["parity"]["agreement"] > as_is["parity"]["agreement"] + 0.4


def test_the_report_names_the_layers_an_int8_file_keeps_in_float(tmp_path, shapes_student, synthetic_images):
    from types import SimpleNamespace

    from datafree.jobs import _deployed_entries
    from datafree.ship.report import Images, ReportSettings, build_report, markdown

    model = _hostile_to_int8(shapes_student)
    int8 = deploy_student(model, shapes_student.info, tmp_path, synthetic=synthetic_images,
                          real_test=shapes_student.test, settings=_int8_settings(), log=lambda line: None)["int8"]
    entries = _deployed_entries(tmp_path, SimpleNamespace(info=shapes_student.info, model=model), 1, load_runner)
    assert [e.name for e in entries] == ["student ONNX", "student int8 ONNX"] and entries[0].note is None
    report = build_report(entries, Images(shapes_student.test), (3, 16, 16), list(shapes_student.info.classes),
                          torch.device("cpu"), ReportSettings(test_images=64, corruption_images=16, cka_images=16,
                                                              latency=False), log=lambda line: None)
    layers = int8["float_layers"]
    assert (f"- student int8 ONNX: {len(layers)} weight layers kept in float by deploy, those int8 hurt most "
            f"({', '.join(layers)})") in markdown(report, {})


def test_int8_that_falls_short_with_its_layers_in_float_names_them(tmp_path, shapes_student, synthetic_images):
    out = tmp_path / "deploy"
    with pytest.raises(DatafreeError) as error:
        deploy_student(_hostile_to_int8(shapes_student), shapes_student.info, out, synthetic=synthetic_images,
                       real_test=shapes_student.test, settings=_int8_settings(int8_float_layers=1,
                                                                              int8_min_agreement=0.999),
                       log=lambda line: None)
    assert ("with up to 1 of its most sensitive weight layers tried in float (features.4 kept; int8_float_layers "
            "allows more)" in str(error.value))
    assert "\n" not in str(error.value) and list(out.iterdir()) == []


@torch.library.custom_op("datafree_test::mystery", mutates_args=())
def _mystery(x: torch.Tensor) -> torch.Tensor:
    return x * 2


@_mystery.register_fake
def _(x):
    return torch.empty_like(x)


class _Mystery(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.head = nn.Conv2d(3, 4, 3), nn.Linear(4, 10)

    def forward(self, x):
        return self.head(_mystery(self.conv(x)).mean((2, 3)))


def test_an_operator_onnx_refuses_is_named_with_the_formats_that_work(tmp_path):
    student = Normalized(_Mystery(), (0.5,) * 3, (0.25,) * 3).eval()
    with pytest.raises(DatafreeError) as refused:
        deploy_student(student, _info(), tmp_path / "onnx", settings=DeploySettings(check_images=8, latency=False),
                       log=lambda line: None)
    message = str(refused.value)
    assert "ONNX export refuses the operator datafree_test.mystery" in message
    assert "formats=[torchscript,export]" in message and "\n" not in message
    assert list((tmp_path / "onnx").iterdir()) == []  # nothing written, not even the files before the refusal
    # What the line recommends works.
    manifest = deploy_student(student, _info(), tmp_path / "other",
                              settings=DeploySettings(formats=["torchscript", "export"], check_images=8, latency=False),
                              log=lambda line: None)
    assert set(manifest["files"]) == {"student.ts", "student.pt2"}


class _DiffersWhenWritten(nn.Module):
    """Python that takes another branch while traced (``when="tracing"``) or exported: the file computes
    something else than the module."""

    def __init__(self, when: str):
        super().__init__()
        self.head, self.when = nn.Linear(3, 10), when

    def forward(self, x):
        logits = self.head(x.mean((2, 3)))
        if torch.jit.is_tracing() if self.when == "tracing" else torch.compiler.is_exporting():
            logits = logits + 0.5 * torch.arange(10.0)
        return logits


@pytest.mark.parametrize("when, formats", [("tracing", ["torchscript"]),
                                           ("exporting", ["torchscript", "export"])])  # a good file first, then a bad one
def test_a_file_outside_the_tolerance_is_not_written_and_the_line_gives_the_difference(tmp_path, when, formats):
    student = Normalized(_DiffersWhenWritten(when), (0.5,) * 3, (0.25,) * 3).eval()
    with pytest.raises(DatafreeError) as refused:
        deploy_student(student, _info(), tmp_path, settings=DeploySettings(formats=formats, check_images=16,
                                                                           latency=False), log=lambda line: None)
    message = str(refused.value)
    assert f"the {formats[-1]} file" in message
    assert "differs from the PyTorch student by up to 4.5 in a logit" in message
    assert "it was not written" in message and "max_logit_diff" in message
    assert list(tmp_path.iterdir()) == []  # the torchscript file that passed is not kept either


def test_int8_needs_synthetic_images_and_says_where_to_get_them(tmp_path):
    student = Normalized(_Gelu(), (0.5,) * 3, (0.25,) * 3).eval()
    with pytest.raises(DatafreeError, match="int8=true calibrates on synthetic images and there are none: give "
                                            "synthetic=DIR"):
        deploy_student(student, _info(), tmp_path, settings=DeploySettings(formats=["onnx"], int8=True,
                                                                           check_images=8, latency=False),
                       log=lambda line: None)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("missing, needle", [("onnxscript", "ONNX export needs onnx and onnxscript"),
                                             ("onnxruntime", "needs onnxruntime")])
def test_without_the_deploy_extra_onnx_says_how_to_install_it(tmp_path, monkeypatch, missing, needle):
    monkeypatch.setitem(sys.modules, missing, None)  # what an environment without the package imports
    student = Normalized(_Gelu(), (0.5,) * 3, (0.25,) * 3).eval()
    with pytest.raises(DatafreeError) as refused:
        deploy_student(student, _info(), tmp_path, settings=DeploySettings(formats=["onnx"], check_images=8,
                                                                           latency=False), log=lambda line: None)
    assert needle in str(refused.value) and 'pip install "datafree[deploy]"' in str(refused.value)
    assert list(tmp_path.iterdir()) == []
