import os

import pytest
import torch

from datafree.data import DeviceBatches, build_dataset
from datafree.models import create_model
from datafree.teachers import ClassifierInfo, Normalized, save_classifier
from datafree.training import train_classifier
from nets import calibrated_bn_net

# Under pytest-xdist (pyproject's -n auto) each test process gets its share of the cores, so that two processes
# on a 2-core machine do not each spin two threads; subprocesses a test starts choose their own (cpu_threads).
_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _workers > 1:
    _cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    torch.set_num_threads(max(1, _cores // _workers))


def pytest_collection_modifyitems(config, items):
    """GPU tests run in one test process, one after another (--dist loadgroup): none may fill the device while
    another measures or captures on it. The tests marked ``long(SECONDS)`` start first, longest first: xdist hands
    out tests in this order, one at a time, so a two-minute test collected last would run alone at the end while
    the other process waits (the demo test did: the suite took 10m14s on 2 cores)."""
    for item in items:
        if item.get_closest_marker("gpu"):
            item.add_marker(pytest.mark.xdist_group("gpu"))
    items.sort(key=_expected_seconds, reverse=True)  # stable: the rest keep their order


def _expected_seconds(item) -> float:
    marker = item.get_closest_marker("long")
    return float(marker.args[0]) if marker else 0.0


@pytest.fixture(scope="session", autouse=True)
def _temporary_home(tmp_path_factory):
    """The suite writes only into temporary folders: datafree's image cache and its default data root live
    under HOME (~/.cache/datafree), so HOME is a temporary folder here and in every subprocess a test starts."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOME", str(tmp_path_factory.mktemp("home")))
        for name in ("DATAFREE_CACHE", "DATAFREE_DATA"):
            patch.delenv(name, raising=False)
        yield


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture
def bn_teacher():
    torch.manual_seed(1)
    return calibrated_bn_net()


@pytest.fixture(scope="session")
def shapes_teacher_path(tmp_path_factory):
    """A microcnn trained briefly on 8x8 shapes: a real teacher whose classes DeepInversion can hit."""
    path = tmp_path_factory.mktemp("teacher") / "teacher.pt"
    with torch.random.fork_rng():
        torch.manual_seed(0)
        train = build_dataset("shapes", "train", n=1500, image_size=8)
        mean, std = train.channel_stats()
        model = Normalized(create_model("microcnn", num_classes=10), mean, std)
        train_classifier(model, DeviceBatches(train, 50, shuffle=True, augment=True, drop_last=True, crop_padding=1, seed=0),
                         None, torch.device("cpu"), epochs=3, lr=0.05, label_smoothing=0.0, progress=False)
    save_classifier(path, model, ClassifierInfo("microcnn", 10, (3, 8, 8), mean, std, list(train.classes)))
    return path
