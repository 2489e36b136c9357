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
    assert said == ["trainer.pool_capacity=auto: 50000 images (146 MiB of uint8 32x32 images)"]  # was "0.0 GiB"


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
                    "8.0 GiB of memory available)"]
    monkeypatch.setattr(sources, "available_memory", lambda: None)  # where it cannot be read: as before
    assert sources.pool_size("auto", (3, 224, 224), torch.device("cpu"), Log()) == 50_000
