import time

import pytest
import torch

from datafree.data import SHAPE_CLASSES, make_shapes
from datafree.errors import DatafreeError


def test_shapes_basic():
    ds = make_shapes(103, image_size=16, seed=0)
    assert ds.images.shape == (103, 3, 16, 16) and ds.images.dtype == torch.uint8
    assert ds.classes == list(SHAPE_CLASSES) and len(ds.classes) == 10
    counts = ds.class_counts()
    assert counts.max() - counts.min() <= 1 and counts.sum() == 103
    assert ds.labels[:10].tolist() != list(range(10))  # shuffled, not cyclic


def test_shapes_deterministic():
    a, b = make_shapes(50, seed=7), make_shapes(50, seed=7)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    c = make_shapes(50, seed=8)
    assert not torch.equal(a.images, c.images)


def test_shapes_sizes_and_class_subset():
    ds = make_shapes(40, image_size=32, seed=1, num_classes=4)
    assert ds.images.shape == (40, 3, 32, 32)
    assert ds.classes == list(SHAPE_CLASSES[:4])
    assert ds.class_counts().tolist() == [10, 10, 10, 10]


def test_shapes_are_not_trivial():
    ds = make_shapes(2000, seed=0)
    x = ds.images.float()
    # Colour alone does not tell the class: per-class mean colours are close to each other.
    class_means = torch.stack([x[ds.labels == k].mean(dim=(0, 2, 3)) for k in range(10)])
    assert (class_means.max(0).values - class_means.min(0).values).max() < 40
    # Images within a class still differ (position, scale, colour, noise).
    first = x[ds.labels == 0]
    assert (first[0] - first[1]).abs().mean() > 5
    # Foreground is visible: every image has some spread of values.
    assert (x.flatten(1).std(1) > 5).all()


def test_shapes_generation_is_fast():
    make_shapes(100)  # warm up
    # CPU time of this process: robust to other jobs sharing the machine (wall time is not).
    start = time.process_time()
    make_shapes(10_000, image_size=16, seed=0)
    assert time.process_time() - start < 2.0


@pytest.mark.parametrize(
    "kwargs, match",
    [({"n": 0}, "n >= 1"), ({"n": 10, "num_classes": 11}, "num_classes"), ({"n": 10, "num_classes": 0}, "num_classes"),
     ({"n": 10, "image_size": 4}, "image_size")],
)
def test_shapes_errors(kwargs, match):
    with pytest.raises(DatafreeError, match=match):
        make_shapes(**kwargs)
