import pytest
import torch

import datafree.data.dataset as dataset_module
from datafree.data import ImageDataset
from datafree.errors import DatafreeError


def make(n=6, c=3, h=4, w=4, classes=("a", "b", "c"), seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, c, h, w), generator=g, dtype=torch.uint8)
    labels = torch.arange(n) % len(classes)
    return ImageDataset(images=images, labels=labels, classes=list(classes))


def test_properties():
    ds = make(n=5, c=1, h=7, w=7, classes=("x", "y"))
    assert len(ds) == 5
    assert ds.num_classes == 2
    assert ds.image_size == 7
    assert ds.channels == 1
    assert ds.class_counts().tolist() == [3, 2]
    assert "n=5" in repr(ds)


@pytest.mark.parametrize(
    "images, labels, classes, match",
    [
        (torch.zeros(2, 3, 4, 4), torch.zeros(2, dtype=torch.long), ["a"], "uint8"),
        (torch.zeros(2, 4, 4, dtype=torch.uint8), torch.zeros(2, dtype=torch.long), ["a"], "N x C x H x W"),
        (torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.zeros(2, dtype=torch.int32), ["a"], "int64"),
        (torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.zeros(2, 1, dtype=torch.long), ["a"], "1-D"),
        (torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.zeros(3, dtype=torch.long), ["a"], "3 labels"),
        (torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.tensor([0, 2]), ["a", "b"], "0..1"),
        (torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.tensor([0, -1]), ["a", "b"], "0..1"),
        (torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.zeros(2, dtype=torch.long), [], "empty"),
        (torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.zeros(2, dtype=torch.long), ["a", "a"], "duplicate"),
        (torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.zeros(2, dtype=torch.long), [0, 1], "list of str"),
        ([[0]], torch.zeros(2, dtype=torch.long), ["a"], "tensors"),
    ],
)
def test_validation(images, labels, classes, match):
    with pytest.raises(DatafreeError, match=match):
        ImageDataset(images=images, labels=labels, classes=classes)


def test_error_is_value_error():
    with pytest.raises(ValueError):
        ImageDataset(images=torch.zeros(1, 3, 2, 2), labels=torch.zeros(1, dtype=torch.long), classes=["a"])


@pytest.mark.parametrize("chunk", [1, 4, 1024])
def test_channel_stats_matches_direct(monkeypatch, chunk):
    monkeypatch.setattr(dataset_module, "_STATS_CHUNK", chunk)
    ds = make(n=11, c=3, h=5, w=3)
    mean, std = ds.channel_stats()
    x = ds.images.double() / 255
    ref_mean = x.mean(dim=(0, 2, 3))
    ref_std = x.permute(1, 0, 2, 3).reshape(3, -1).std(dim=1, unbiased=False)
    assert isinstance(mean, tuple) and len(mean) == 3 and all(isinstance(m, float) for m in mean)
    assert torch.allclose(torch.tensor(mean, dtype=torch.float64), ref_mean, atol=1e-12)
    assert torch.allclose(torch.tensor(std, dtype=torch.float64), ref_std, atol=1e-12)


def test_channel_stats_constant_image():
    images = torch.empty(3, 2, 4, 4, dtype=torch.uint8)
    images[:, 0] = 255
    images[:, 1] = 51
    ds = ImageDataset(images=images, labels=torch.zeros(3, dtype=torch.long), classes=["a"])
    mean, std = ds.channel_stats()
    assert mean == pytest.approx((1.0, 0.2))
    assert std == pytest.approx((0.0, 0.0), abs=1e-12)


def test_channel_stats_empty():
    ds = ImageDataset(images=torch.zeros(0, 3, 2, 2, dtype=torch.uint8), labels=torch.zeros(0, dtype=torch.long), classes=["a"])
    assert len(ds) == 0
    with pytest.raises(DatafreeError, match="empty"):
        ds.channel_stats()


def test_subset():
    ds = make(n=6)
    sub = ds.subset([4, 0, -1])
    assert len(sub) == 3
    assert torch.equal(sub.images, ds.images[[4, 0, 5]])
    assert sub.labels.tolist() == [ds.labels[4].item(), ds.labels[0].item(), ds.labels[5].item()]
    assert sub.classes == ds.classes and sub.classes is not ds.classes
    mask = ds.labels == 1
    assert torch.equal(ds.subset(mask).labels, ds.labels[mask])
    assert torch.equal(ds.subset(torch.tensor([1, 2])).images, ds.images[1:3])
    assert torch.equal(ds.subset(slice(2, None)).images, ds.images[2:])
    assert len(ds.subset([])) == 0
    # A subset is a copy: editing it leaves the original alone.
    sub.images.zero_()
    assert ds.images[4].any()


def test_subset_errors():
    ds = make(n=6)
    with pytest.raises(DatafreeError, match="out of range"):
        ds.subset([6])
    with pytest.raises(DatafreeError, match="boolean mask"):
        ds.subset(torch.ones(5, dtype=torch.bool))
    with pytest.raises(DatafreeError, match="integer"):
        ds.subset(torch.tensor([0.5]))


def test_relabelled_follows_the_names_of_a_longer_class_list():
    """A test split that lacks "b": its "c" images are label 2 of the training split's a, b, c, not 1."""
    data = ImageDataset(torch.zeros(3, 1, 2, 2, dtype=torch.uint8), torch.tensor([0, 1, 1]), ["a", "c"])
    relabelled = data.relabelled(["a", "b", "c"])
    assert relabelled.classes == ["a", "b", "c"] and relabelled.labels.tolist() == [0, 2, 2]
    with pytest.raises(DatafreeError, match=r"without \['c'\]"):
        data.relabelled(["a", "b"])
