import itertools

import pytest
import torch

from datafree.data import DeviceBatches, ImageDataset
from datafree.errors import DatafreeError


def numbered(n=10, size=4, classes=3):
    """Image i carries i in its top-left red pixel, so batches can be traced to samples."""
    images = torch.full((n, 3, size, size), 7, dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.arange(n, dtype=torch.uint8)
    return ImageDataset(images=images, labels=torch.arange(n) % classes, classes=[f"c{k}" for k in range(classes)])


def ids(batches):
    return torch.cat([(x[:, 0, 0, 0] * 255).round().long() for x, _ in batches])


def test_plain_order_covers_every_sample_once():
    ds = numbered(10)
    loader = DeviceBatches(ds, batch_size=4)
    assert len(loader) == 3
    batches = list(loader)
    assert [len(y) for _, y in batches] == [4, 4, 2]
    assert ids(batches).tolist() == list(range(10))
    assert torch.cat([y for _, y in batches]).tolist() == ds.labels.tolist()
    x, y = batches[0]
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.shape == (4, 3, 4, 4) and x.device.type == "cpu"
    assert torch.allclose(x[:, 1], torch.full_like(x[:, 1], 7 / 255))
    # Iterating again gives the same epoch.
    assert ids(loader).tolist() == list(range(10))


def test_drop_last():
    loader = DeviceBatches(numbered(10), batch_size=4, drop_last=True)
    assert len(loader) == 2
    assert ids(loader).tolist() == list(range(8))
    with pytest.raises(DatafreeError, match="drop_last"):
        DeviceBatches(numbered(3), batch_size=4, drop_last=True)


def test_shuffle_is_a_permutation_and_changes_per_epoch():
    ds = numbered(50)
    loader = DeviceBatches(ds, batch_size=8, shuffle=True, seed=1)
    first, second = ids(loader), ids(loader)
    assert sorted(first.tolist()) == list(range(50))
    assert sorted(second.tolist()) == list(range(50))
    assert first.tolist() != list(range(50))
    assert first.tolist() != second.tolist()
    # Labels travel with their images.
    for x, y in loader:
        assert torch.equal(y, ds.labels[(x[:, 0, 0, 0] * 255).round().long()])


def test_seed_reproducibility():
    ds = numbered(40, size=6)

    def run(seed):
        loader = DeviceBatches(ds, batch_size=16, shuffle=True, augment=True, crop_padding=2, seed=seed)
        return [torch.cat([x.flatten() for x, _ in loader]) for _ in range(2)]

    a, b, c = run(3), run(3), run(4)
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    assert not torch.equal(a[0], c[0])
    assert not torch.equal(a[0], a[1])


def reference_variants(image: torch.Tensor, pad: int, flip: bool) -> list[torch.Tensor]:
    """Every crop/flip the augmentation may produce, by a slow per-case loop."""
    c, h, w = image.shape
    padded = torch.zeros(c, h + 2 * pad, w + 2 * pad, dtype=image.dtype)
    padded[:, pad : pad + h, pad : pad + w] = image
    out = []
    for oy, ox in itertools.product(range(2 * pad + 1), repeat=2):
        crop = padded[:, oy : oy + h, ox : ox + w]
        out.append(crop)
        if flip:
            out.append(crop.flip(-1))
    return out


@pytest.mark.parametrize("pad, flip", [(1, True), (2, False), (0, True), (1, False)])
def test_augmentation_matches_reference(pad, flip):
    image = torch.arange(1, 3 * 3 * 4 + 1, dtype=torch.uint8).view(3, 3, 4)  # all pixels distinct, none 0
    ds = ImageDataset(images=image.expand(600, -1, -1, -1).clone(), labels=torch.zeros(600, dtype=torch.long), classes=["a"])
    loader = DeviceBatches(ds, batch_size=256, augment=True, crop_padding=pad, flip=flip, seed=0)
    variants = reference_variants(image, pad, flip)
    seen = set()
    for x, y in loader:
        assert x.shape[1:] == (3, 3, 4) and x.dtype == torch.float32
        assert x.min() >= 0 and x.max() <= 1
        as_bytes = (x * 255).round().to(torch.uint8)
        for sample in as_bytes:
            matches = [k for k, v in enumerate(variants) if torch.equal(sample, v)]
            assert matches, "augmented sample is not a padded crop / flip of the input"
            seen.add(matches[0])
    expected_count = len({tuple(v.flatten().tolist()) for v in variants})
    assert len(seen) == expected_count  # with 600 draws every variant shows up


def test_augment_off_and_flip_only_keeps_values():
    ds = numbered(20, size=5)
    plain = torch.cat([x for x, _ in DeviceBatches(ds, batch_size=7)])
    none = torch.cat([x for x, _ in DeviceBatches(ds, batch_size=7, augment=True, crop_padding=0, flip=False)])
    assert torch.equal(plain, none)
    flipped = torch.cat([x for x, _ in DeviceBatches(ds, batch_size=7, augment=True, crop_padding=0, seed=0)])
    same = (flipped == plain).flatten(1).all(1)
    mirrored = (flipped == plain.flip(-1)).flatten(1).all(1)
    assert (same | mirrored).all() and same.any() and mirrored.any()


def test_channels_last():
    loader = DeviceBatches(numbered(8, size=6), batch_size=4, augment=True, channels_last=True, seed=0)
    for x, _ in loader:
        assert x.is_contiguous(memory_format=torch.channels_last)


def test_bad_arguments():
    ds = numbered(4)
    for bad in (0, -1, 2.0):
        with pytest.raises(DatafreeError, match="batch_size"):
            DeviceBatches(ds, batch_size=bad)
    with pytest.raises(DatafreeError, match="crop_padding"):
        DeviceBatches(ds, batch_size=2, crop_padding=-1)
    with pytest.raises(DatafreeError, match="ImageDataset"):
        DeviceBatches(torch.zeros(3), batch_size=2)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_batches_without_host_syncs():
    ds = numbered(200, size=8)
    loader = DeviceBatches(ds, batch_size=64, device="cuda", shuffle=True, augment=True, crop_padding=2, seed=0,
                           channels_last=True)
    assert loader.images.device.type == "cuda" and loader.images.dtype == torch.uint8
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        batches = list(loader)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert all(x.device.type == "cuda" and y.device.type == "cuda" for x, y in batches)
    assert sorted(torch.cat([y for _, y in batches]).tolist()) == sorted(ds.labels.tolist())
    again = DeviceBatches(ds, batch_size=64, device="cuda", shuffle=True, augment=True, crop_padding=2, seed=0)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again))


def test_shards_of_a_global_batch_are_the_one_process_batch():
    # Two ranks with batch 10 read, together, what one process with batch 20 reads: the same images, the
    # same crops and flips, epoch after epoch; evaluation shards cover every image once.
    dataset = numbered(100, size=6)
    one = DeviceBatches(dataset, 20, shuffle=True, augment=True, drop_last=True, crop_padding=1, seed=3)
    ranks = [DeviceBatches(dataset, 10, shuffle=True, augment=True, drop_last=True, crop_padding=1, seed=3, shard=(r, 2))
             for r in range(2)]
    for _ in range(2):
        whole, parts = list(one), [list(r) for r in ranks]
        assert len(whole) == len(parts[0]) == len(parts[1]) == 5
        for (x, y), (x0, y0), (x1, y1) in zip(whole, *parts):
            assert torch.equal(torch.cat([x0, x1]), x) and torch.equal(torch.cat([y0, y1]), y)
    shards = [DeviceBatches(dataset, 30, shard=(r, 3)) for r in range(3)]
    assert sorted(torch.cat([ids(s) for s in shards]).tolist()) == list(range(100))
    with pytest.raises(ValueError, match="drop_last"):
        DeviceBatches(dataset, 10, shuffle=True, shard=(0, 2))


@pytest.mark.parametrize("crop", ["shift", "resized"])
def test_draws_repeat_with_their_generator_and_leave_the_stream_as_it_was(crop):
    def stream():
        return DeviceBatches(numbered(40, size=8), batch_size=8, shuffle=True, augment=True, drop_last=True,
                             crop_padding=2, crop=crop, seed=5, channels_last=True)

    def draws(loader, seed):
        return torch.stack(list(loader.draw(3, torch.Generator().manual_seed(seed))))

    plain, drawn = stream(), stream()
    expected = [x for x, _ in itertools.islice(plain, 5)]
    batches = iter(drawn)
    got = [next(batches)[0] for _ in range(2)]
    generator = drawn.state_dict()["generator"]
    first = draws(drawn, 11)  # between the stream's second and third batches
    assert torch.equal(generator, drawn.state_dict()["generator"])  # the stream's generator did not move
    got += [next(batches)[0] for _ in range(3)]
    assert all(torch.equal(a, b) for a, b in zip(expected, got, strict=True))
    assert first.shape == (3, 8, 3, 8, 8) and first.dtype == torch.float32 and 0 <= first.min() and first.max() <= 1
    assert all(x.is_contiguous(memory_format=torch.channels_last) for x in first)
    assert torch.equal(first, draws(stream(), 11)) and not torch.equal(first, draws(stream(), 12))
    assert not torch.equal(draws(DeviceBatches(numbered(40, size=8), 8, augment=False), 11),
                           draws(stream(), 11))  # augmented as training batches are
