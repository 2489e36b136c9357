"""The demo's student network (microcnn) trained briefly on 16-px shapes, and synthetic images inverted from it."""
from dataclasses import dataclass

import pytest
import torch

from datafree.data import DeviceBatches, ImageDataset, build_dataset
from datafree.models import create_model
from datafree.ops.pixels import quantise
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


@pytest.fixture(scope="session")
def shapes_student(tmp_path_factory) -> Trained:
    """microcnn (the demo's student) trained for 3 epochs on 1,500 16-px shapes: about 37% test accuracy, enough
    for int8 to have something to lose; written as a datafree checkpoint."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        train = build_dataset("shapes", "train", n=1500, image_size=16)
        test = build_dataset("shapes", "test", n=400, image_size=16)
        mean, std = train.channel_stats()
        model = Normalized(create_model("microcnn", num_classes=10), mean, std)
        train_classifier(model, DeviceBatches(train, 50, shuffle=True, augment=True, drop_last=True, crop_padding=2,
                                              seed=0), None, torch.device("cpu"), epochs=3, lr=0.05,
                         label_smoothing=0.0, progress=False)
    info = ClassifierInfo("microcnn", 10, (3, 16, 16), mean, std, list(train.classes))
    path = tmp_path_factory.mktemp("student") / "student.pt"
    save_classifier(path, model, info)
    return Trained(model.eval(), info, path, train, test)


@pytest.fixture(scope="session")
def synthetic_images(shapes_student) -> torch.Tensor:
    """128 uint8 images made by DeepInversion from the network alone (no real image): the calibration set."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        synthesizer = DeepInversion(batch_size=64, iterations=30, lr=0.1, bn_weight=1.0, tv_l2_weight=4e-3, amp=False)
        synthesizer.bind(shapes_student.model, shapes_student.model, 10, (3, 16, 16), torch.device("cpu"))
        return torch.cat([quantise(synthesizer.synthesize().images) for _ in range(2)])
