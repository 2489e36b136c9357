"""Every shipped recipe composes, and everything it builds instantiates on the CPU."""
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module
from hydra.utils import instantiate
from omegaconf import OmegaConf

from datafree.jobs import device_batches
from datafree.models import create_model
from datafree.synthesizers import Synthesizer

RECIPES = Path(__file__).resolve().parents[1] / "recipes"  # the source tree; installed as datafree.recipes


def _options(group: str) -> list[str]:
    options = sorted(p.stem for p in (RECIPES / group).glob("*.yaml"))
    assert options, f"no recipes found in {RECIPES / group}"  # an empty list would silently test nothing
    return options


def _compose(name: str, overrides: list[str]):
    with initialize_config_module("datafree.recipes", version_base="1.3"):
        return compose(name, overrides=overrides)


@pytest.mark.parametrize("name", ["distill", "train_teacher", "synthesize"])
@pytest.mark.parametrize("experiment", [None, *_options("experiment")])
def test_experiments_compose(name, experiment):
    cfg = _compose(name, [] if experiment is None else [f"experiment={experiment}"])
    num_classes = cfg.data.num_classes or 10  # synthesize reads no data: the teacher's checkpoint says
    if cfg.teacher.arch is not None:  # null: the checkpoint names it (synthesize, teacher=checkpoint)
        create_model(cfg.teacher.arch, num_classes=num_classes)
    elif name == "distill":  # synthesize and train-teacher read the checkpoint or refuse in one line
        assert OmegaConf.is_missing(cfg.teacher, "checkpoint"), "a null arch needs a checkpoint to name it"
    if cfg.get("student"):
        create_model(cfg.student.arch, num_classes=num_classes)


@pytest.mark.parametrize("synthesizer", _options("synthesizer"))
def test_synthesizers_instantiate(synthesizer):
    given = ["synthesizer.path=."] if synthesizer == "images" else []  # the images to draw from: the user's
    cfg = _compose("distill", [f"synthesizer={synthesizer}", *given])
    assert isinstance(instantiate(cfg.synthesizer), Synthesizer)


@pytest.mark.parametrize("trainer", _options("trainer"))
def test_trainers_instantiate(trainer):
    cfg = _compose("distill", [f"trainer={trainer}"])
    make = instantiate(cfg.trainer)
    assert callable(make) and make.keywords["loss"].temperature > 0


@pytest.mark.parametrize("group", ["teacher", "student"])
def test_every_model_recipe_names_a_zoo_model(group):
    for option in _options(group):
        cfg = _compose("distill", [f"{group}={option}"])
        if cfg[group].get("source", "datafree") != "datafree":
            continue  # teachers from the user's own sources: tests/teachers/
        if cfg[group].arch is None:  # teacher=checkpoint: the checkpoint names the network
            assert OmegaConf.is_missing(cfg[group], "checkpoint"), option
            continue
        create_model(cfg[group].arch, num_classes=10)


def test_every_teacher_recipe_names_a_known_source():
    from datafree.teachers import SOURCES
    from datafree.teachers.loader import NODE_KEYS

    for option in _options("teacher"):
        node = _compose("distill", [f"teacher={option}"]).teacher
        assert node.source in SOURCES and set(node.keys()) <= NODE_KEYS, option


@pytest.mark.parametrize("data", _options("data"))
def test_data_recipes_compose(data):
    overrides = [f"data={data}"] + (["data.root=/x", "data.num_classes=3"] if data == "imagefolder" else [])
    cfg = _compose("distill", overrides)
    if data == "none":  # the teacher alone: no labelled data, no accuracy
        assert cfg.data.train is None and cfg.data.test is None and cfg.data.num_classes is None
        return
    if data.startswith("synthetic"):  # a stored synthetic set: the manifest says classes and size (tests/distill)
        assert cfg.data.synthetic and cfg.data.train is None
        assert data == "synthetic" or cfg.data.test._target_ == "datafree.data.build_dataset"
        return
    assert cfg.data.train._target_ == "datafree.data.build_dataset"
    assert cfg.data.num_classes > 0


def test_shapes_data_instantiates():
    cfg = _compose("distill", ["data.train.n=50", "data.test.n=20"])
    train = instantiate(cfg.data.train)
    assert len(train) == 50 and train.num_classes == cfg.data.num_classes


def test_kornia_augmentations_from_a_recipe():
    cfg = _compose("distill", ["synthesizer=deepinversion",
                               "synthesizer.augment=[{_target_: kornia.augmentation.ColorJitter, brightness: 0.1, p: 0.5}]"])
    synth = instantiate(cfg.synthesizer)
    assert len(synth.augment.extra) == 1


def test_the_any_teacher_recipe_measures_batchnorm_in_the_teachers_units_and_the_cifar_pairs_keep_deepinversions():
    """experiment=fast must hold on teachers whose raw BatchNorm distance differs by orders of magnitude
    (docs/benchmarks.md); the CIFAR pairs' recipes were tuned and measured over three seeds with the raw one."""
    cfg = _compose("distill", ["experiment=fast"])
    device_batches(cfg, torch.device("cpu"))  # as the job resolves batch_size=auto before it builds anything
    assert (cfg.synthesizer.bn_distance, cfg.synthesizer.bn_weight) == ("relative", 400.0)
    assert isinstance(instantiate(cfg.synthesizer, amp=False), Synthesizer)
    for pair in ("cifar10_resnet34_resnet18_fast", "cifar10_wrn40_2_wrn16_1_fast"):
        synthesizer = _compose("distill", [f"experiment={pair}"]).synthesizer
        assert (synthesizer.bn_distance, synthesizer.bn_weight) == ("raw", 10.0)


def test_the_any_teacher_recipes_batches_follow_the_device_and_the_cifar_pairs_keep_theirs(caplog):
    """At the GPU's 256 and 512 one round of a ResNet-18 teacher at 64 px took 213 s on 2 cores, at 32 and 64 it
    took 26 s (docs/benchmarks.md); the CIFAR pairs' recipes were measured at their own numbers."""
    sizes = {}
    for device in ("cpu", "cuda"):
        cfg = _compose("distill", ["experiment=fast"])
        assert (cfg.synthesizer.batch_size, cfg.trainer.batch_size) == ("auto", "auto")
        with caplog.at_level("INFO", logger="datafree"):
            device_batches(cfg, torch.device(device))
        sizes[device] = (cfg.synthesizer.batch_size, cfg.trainer.batch_size)
    assert sizes == {"cpu": (32, 64), "cuda": (256, 512)}
    assert ("synthesizer.batch_size=auto: 32, trainer.batch_size=auto: 64 on the CPU (256 and 512 on a GPU; a number "
            "chooses)") in caplog.text
    cfg = _compose("distill", ["experiment=fast", "trainer.batch_size=128"])  # a number is the user's
    device_batches(cfg, torch.device("cpu"))
    assert (cfg.synthesizer.batch_size, cfg.trainer.batch_size) == (32, 128)
    for pair in ("cifar10_resnet34_resnet18_fast", "cifar10_wrn40_2_wrn16_1_fast"):
        cfg = _compose("distill", [f"experiment={pair}"])
        assert (cfg.synthesizer.batch_size, cfg.trainer.batch_size) == (256, 512)


def test_a_resumed_recipes_auto_batches_are_compared_as_the_device_resolves_them():
    from datafree.utils.run_state import config_differences

    saved = {"trainer": {"batch_size": 64}, "synthesizer": {"batch_size": 32}}
    assert config_differences(saved, {"trainer": {"batch_size": "auto"}, "synthesizer": {"batch_size": "auto"}}) == []
    assert config_differences(saved, {"trainer": {"batch_size": 128}, "synthesizer": {"batch_size": 32}}) == \
        ["trainer.batch_size: 64 -> 128"]


def test_the_any_teacher_recipe_warms_the_student_up_and_the_cifar_pairs_do_not():
    """A torchvision ResNet-18 at 128 px died in its first round at the fast trainer's rate without a warm-up
    (docs/benchmarks.md); the CIFAR pairs' recipes were measured without one."""
    assert _compose("distill", ["experiment=fast"]).trainer.warmup_steps == 200
    for pair in ("cifar10_resnet34_resnet18_fast", "cifar10_wrn40_2_wrn16_1_fast", "demo_fast"):
        assert _compose("distill", [f"experiment={pair}"]).trainer.warmup_steps == 0
