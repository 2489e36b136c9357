"""The demo's networks trained briefly on 16-px shapes (a tinycnn teacher, a microcnn student), synthetic images
inverted from the student, and the student deployed with int8 through the Python API."""
from dataclasses import dataclass

import pytest
import torch

from datafree.data import DeviceBatches, ImageDataset, build_dataset
from datafree.models import create_model
from datafree.ops.pixels import quantise
from datafree.ship import DeploySettings, deploy_student
from datafree.synthesizers import DeepInversion
from datafree.teachers import ClassifierInfo, Normalized, save_classifier
from datafree.training import train_classifier


@dataclass
class Trained:
    model: Normalized
    info: ClassifierInfo
    path: object
    train: ImageDataset
    test: ImageDataset


def _trained(arch: str, tmp_path_factory) -> Trained:
    """``arch`` trained for 3 epochs on 1,500 16-px shapes (the test split: 400 images, what ``data=shapes
    data.image_size=16 data.test.n=400`` draws), written as a datafree checkpoint."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        train = build_dataset("shapes", "train", n=1500, image_size=16)
        test = build_dataset("shapes", "test", n=400, image_size=16)
        mean, std = train.channel_stats()
        model = Normalized(create_model(arch, num_classes=10), mean, std)
        train_classifier(model, DeviceBatches(train, 50, shuffle=True, augment=True, drop_last=True, crop_padding=2,
                                              seed=0), None, torch.device("cpu"), epochs=3, lr=0.05,
                         label_smoothing=0.0, progress=False)
    info = ClassifierInfo(arch, 10, (3, 16, 16), mean, std, list(train.classes))
    path = tmp_path_factory.mktemp(arch) / f"{arch}.pt"
    save_classifier(path, model, info)
    return Trained(model.eval(), info, path, train, test)


@pytest.fixture(scope="session")
def shapes_student(tmp_path_factory) -> Trained:
    """microcnn (the demo's student): about 39% test accuracy, enough for int8 to have something to lose."""
    return _trained("microcnn", tmp_path_factory)


@pytest.fixture(scope="session")
def shapes_teacher(tmp_path_factory) -> Trained:
    """tinycnn (the demo's teacher network): about 74% test accuracy."""
    return _trained("tinycnn", tmp_path_factory)


@pytest.fixture(scope="session")
def synthetic_images(shapes_student) -> torch.Tensor:
    """128 uint8 images made by DeepInversion from the network alone (no real image): the calibration set."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        synthesizer = DeepInversion(batch_size=64, iterations=30, lr=0.1, bn_weight=1.0, tv_l2_weight=4e-3, amp=False)
        synthesizer.bind(shapes_student.model, shapes_student.model, 10, (3, 16, 16), torch.device("cpu"))
        return torch.cat([quantise(synthesizer.synthesize().images) for _ in range(2)])


@pytest.fixture(scope="session")
def deployed(shapes_student, synthetic_images, tmp_path_factory):
    """The student in every format and as int8 calibrated on the 128 synthetic images (real calibration compared):
    (the folder, what deploy.json holds)."""
    out = tmp_path_factory.mktemp("deploy")
    settings = DeploySettings(int8=True, calibration_images=128, check_images=128, latency=False)
    manifest = deploy_student(shapes_student.model, shapes_student.info, out, synthetic=synthetic_images,
                              real_test=shapes_student.test, real_train=shapes_student.train, settings=settings,
                              log=lambda line: None)
    return out, manifest
