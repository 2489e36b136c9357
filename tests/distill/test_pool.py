import pytest
import torch

from datafree.distill.pool import SyntheticPool


def test_pool_wraps_and_keeps_newest():
    pool = SyntheticPool(5, (1, 2, 2))
    for value in range(4):  # batches of 2 images, each filled with value/10
        pool.add(torch.full((2, 1, 2, 2), value / 10))
    assert len(pool) == 5
    stored = pool.images()
    assert stored.shape == (5, 1, 2, 2)
    # oldest first: one image of batch 1, then batches 2 and 3
    assert [round(v) for v in stored[:, 0, 0, 0].tolist()] == [round(255 * 0.1)] + [round(255 * 0.2)] * 2 + [round(255 * 0.3)] * 2


def test_sample_is_float_in_unit_range_and_oversized_batch_is_cut():
    pool = SyntheticPool(3, (3, 4, 4))
    pool.add(torch.rand(10, 3, 4, 4))
    assert len(pool) == 3
    x = pool.sample(7)
    assert x.dtype == torch.float32 and x.shape == (7, 3, 4, 4) and 0 <= x.min() and x.max() <= 1


def test_zero_capacity_pool_stays_empty():
    pool = SyntheticPool(0, (3, 4, 4))
    pool.add(torch.rand(2, 3, 4, 4))
    assert len(pool) == 0


def test_a_saved_run_gives_its_wrapped_pool_oldest_first(tmp_path):
    """What a finished run's state holds (storage order and write position) reads back as the live pool did."""
    from datafree.distill.runs import load_distill_run
    from datafree.utils.run_state import FORMAT

    pool = SyntheticPool(5, (1, 2, 2))
    for value in range(4):
        pool.add(torch.full((2, 1, 2, 2), value / 10))
    torch.save({"format": FORMAT, "kind": "distill", "student": {}, "pool": pool.state_dict()}, tmp_path / "state_last.pt")
    run = load_distill_run(tmp_path)
    assert run.pool_next == 3 and torch.equal(run.pool_images, pool.state_dict()["images"])  # storage order
    assert torch.equal(run.pool_by_age(), pool.images())
    assert not torch.equal(run.pool_by_age(), run.pool_images)  # it had wrapped: the orders differ


def test_the_auto_pool_on_the_cpu_says_its_size_in_units_that_show_it():
    said = []

    class Log:
        def info(self, line):
            said.append(line)

    from datafree.distill.sources import pool_size

    assert pool_size("auto", (3, 32, 32), torch.device("cpu"), Log()) == 50_000
    assert said == ["trainer.pool_capacity=auto: 50000 images (146 MiB of uint8 32x32 images), taken as it fills"]


def test_the_auto_pool_on_the_cpu_takes_at_most_a_quarter_of_the_memory_available(monkeypatch):
    # 50,000 images at 224 px are 7 GiB: on a machine with 8 GiB free that would leave too little for the steps
    said = []

    class Log:
        def info(self, line):
            said.append(line)

    from datafree.distill import sources

    monkeypatch.setattr(sources, "available_memory", lambda: 8 * 2**30)
    chosen = sources.pool_size("auto", (3, 224, 224), torch.device("cpu"), Log())
    assert chosen == 8 * 2**30 // 4 // (3 * 224 * 224) == 14_266
    assert said == ["trainer.pool_capacity=auto: 14266 images (2.0 GiB of uint8 224x224 images; a quarter of the "
                    "8.0 GiB of memory available), taken as it fills"]
    monkeypatch.setattr(sources, "available_memory", lambda: None)  # where it cannot be read: as before
    assert sources.pool_size("auto", (3, 224, 224), torch.device("cpu"), Log()) == 50_000


def _batches(count, size, shape=(1, 2, 2)):
    """Batches whose images are told apart by value: image i of the stream is i/255 everywhere."""
    return [torch.arange(b * size, (b + 1) * size).float().div(255).view(-1, 1, 1, 1).expand(size, *shape)
            for b in range(count)]


def test_the_pool_grows_as_it_fills_and_draws_what_a_pool_allocated_at_once_draws():
    """The storage doubles as images arrive, up to the capacity; until full it never wraps, so every slot holds what
    a pool allocated at once holds there, and a seeded draw returns the same images (a run's training is unchanged)."""
    growing, at_once = SyntheticPool(50, (1, 2, 2), first_allocation=4), SyntheticPool(50, (1, 2, 2), first_allocation=50)
    held = []
    for batch in _batches(20, 3):  # 60 images: past the capacity, so both wrap
        growing.add(batch)
        at_once.add(batch)
        held.append(growing.nbytes() // 4)
        assert torch.equal(growing.images(), at_once.images()) and len(growing) == len(at_once)
        torch.manual_seed(len(held))
        drawn = growing.sample_uint8(7)
        torch.manual_seed(len(held))
        assert torch.equal(drawn, at_once.sample_uint8(7))
    assert held[:3] == [4, 8, 16] and sorted(set(held)) == [4, 8, 16, 32, 50]  # doubled, then the capacity
    assert growing.allocations == 5 and at_once.allocations == 1
    assert growing.capacity_bytes() == at_once.nbytes() == 50 * 4
    assert [round(v * 255) for v in growing.sample(1000).flatten().unique().tolist()] == list(range(10, 60))


def test_one_batch_larger_than_the_doubling_is_taken_whole():
    pool = SyntheticPool(100, (1, 2, 2), first_allocation=4)
    pool.add(torch.rand(30, 1, 2, 2))
    assert pool.nbytes() == 30 * 4 and pool.allocations == 2 and len(pool) == 30


def test_out_of_memory_the_pool_stops_growing_and_keeps_the_newest(monkeypatch):
    pool = SyntheticPool(50, (1, 2, 2), first_allocation=4)
    allocate = pool._allocate

    def at_most_eight(images):
        if images > 8:
            raise torch.OutOfMemoryError("CUDA out of memory (faked)")
        return allocate(images)

    monkeypatch.setattr(pool, "_allocate", at_most_eight)
    batches = _batches(5, 3)
    for batch in batches[:3]:  # 9 images: the growth from 8 to 16 fails
        pool.add(batch)
    assert pool.capacity == 8 and pool.nbytes() == 8 * 4 and len(pool) == 8
    assert pool.stopped_growing == ("the replay pool stopped growing at 8 images: 0 kB for 16 did not fit beside "
                                    "the run, so it keeps the newest 8 from now on (trainer.pool_capacity=8 sets that "
                                    "from the start)")
    for batch in batches[3:]:
        pool.add(batch)
    assert pool.images()[:, 0, 0, 0].tolist() == list(range(7, 15))  # the newest (uint8 as stored), oldest first


def test_a_saved_pool_is_restored_into_a_new_pool_that_starts_small():
    saved = SyntheticPool(40, (1, 2, 2), first_allocation=40)
    for batch in _batches(5, 7):  # 35 images, not yet wrapped
        saved.add(batch)
    restored = SyntheticPool(40, (1, 2, 2), first_allocation=4)
    restored.load_state_dict(saved.state_dict())
    assert torch.equal(restored.images(), saved.images()) and restored.nbytes() == 35 * 4
    for pool in (saved, restored):
        pool.add(_batches(1, 9)[0])  # both wrap the same way
    assert torch.equal(restored.images(), saved.images()) and restored.state_dict()["next"] == saved.state_dict()["next"]


def test_a_saved_pool_that_no_longer_fits_is_refused_with_what_to_do(monkeypatch):
    from datafree.errors import DatafreeError

    saved = SyntheticPool(40, (1, 2, 2))
    saved.add(torch.rand(30, 1, 2, 2))
    restored = SyntheticPool(40, (1, 2, 2), first_allocation=4)
    monkeypatch.setattr(restored, "_allocate", lambda images: (_ for _ in ()).throw(torch.OutOfMemoryError("faked")))
    with pytest.raises(DatafreeError, match=r"^cannot resume: the replay pool stopped growing at 4 images: .*; the "
                                            r"saved pool holds 30 images\. Free GPU memory .* and resume again\.$"):
        restored.load_state_dict(saved.state_dict())
