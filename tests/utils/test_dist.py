"""What torchrun changes that one process can check: file names per rank, sizes per rank, refusals."""
import pytest
import torch
from omegaconf import OmegaConf

from datafree import cli
from datafree.errors import DatafreeError
from datafree.jobs import batch_share, per_rank_sizes
from datafree.models import create_model
from datafree.utils import dist
from datafree.utils.logging import RunLogger
from datafree.utils.loop import Loop
from datafree.utils.nonfinite import NonFiniteGuard
from datafree.utils.run_state import StateFiles

CPU = torch.device("cpu")


@pytest.fixture
def two_ranks(monkeypatch):
    """The environment of torchrun's rank 1 of 2 (no process group is joined)."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")


def test_every_rank_keeps_its_own_state_files(tmp_path, two_ranks):
    files = StateFiles(tmp_path, config={"a": 1}, resume=True)
    assert files.last_path.name == "state_last.rank1.pt" and files.name_for(0) == "state_last.pt"
    for saves in (1, 2):
        files.save({"step": saves, "saves": saves})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state_last.rank1.pt", "state_prev.rank1.pt"]
    assert files.load()["step"] == 2 and files.load(saves=1)["step"] == 1 and files.load(saves=3) is None


def test_a_run_saved_by_two_processes_resumes_only_with_two(tmp_path):
    StateFiles(tmp_path, config={}).save({"kind": "test", "elapsed_s": 0.0, "best": 0.0, "world_size": 2})
    loop = Loop("test", StateFiles(tmp_path, config={}, resume=True), NonFiniteGuard(CPU, ()),
                RunLogger(tmp_path, tensorboard=False, enabled=False), hint="")
    with pytest.raises(DatafreeError, match=r"saved by 2 processes and this one has 1: .* torchrun and 2 processes"):
        loop.resume(lambda saved: None)


def test_global_batch_shares_the_sizes_among_the_ranks(two_ranks):
    cfg = OmegaConf.create({"global_batch": True, "data": {"batch_size": 64}, "trainer": {"batch_size": 256,
                                                                                          "pool_capacity": 5}})
    assert per_rank_sizes(cfg) == ["data.batch_size 64 = 2 x 32", "trainer.batch_size 256 = 2 x 128",
                                   "trainer.pool_capacity 5 = 2 x 3"]
    assert cfg.trainer.batch_size == 128 and cfg.data.batch_size == 32
    with pytest.raises(DatafreeError, match=r"global_batch=true shares trainer.batch_size=15 among 2 .* multiple of 2"):
        per_rank_sizes(OmegaConf.create({"global_batch": True, "trainer": {"batch_size": 15}}))
    assert per_rank_sizes(OmegaConf.create({"global_batch": False, "trainer": {"batch_size": 15}})) == []
    # what the CPU's memory check says the batches in: the recipe's global sizes, or each process's own
    assert batch_share(OmegaConf.create({"global_batch": True})) == 2
    assert batch_share(OmegaConf.create({"global_batch": False})) == 1


def test_sync_batchnorm_needs_gpus_and_is_a_no_op_in_one_process(monkeypatch, two_ranks):
    student = create_model("microcnn", num_classes=10)
    with pytest.raises(DatafreeError, match="trainer.sync_batchnorm=true needs GPUs"):
        dist.sync_batchnorm(student, CPU, "trainer.sync_batchnorm")
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert dist.sync_batchnorm(student, CPU, "trainer.sync_batchnorm") is student


@pytest.mark.parametrize("argv, needle", [
    (["audit", "synthetic=x"], "datafree audit runs in one process"),
    (["inspect", "x"], "datafree inspect runs in one process"),
    (["distill", "-m", "seed=0,1"], "multirun (-m) starts one job after the other"),
    (["distill", "--config-dir", "x"], "name the run directory: hydra.run.dir=DIR"),
])
def test_commands_that_cannot_run_under_torchrun_are_refused_by_rank_0(monkeypatch, capsys, argv, needle):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert cli.main(argv) == 2
    assert needle in capsys.readouterr().err
    monkeypatch.setenv("RANK", "1")
    assert cli.main(argv) == 2
    assert capsys.readouterr().err == ""  # rank 0 says it for all


def test_a_failed_collective_reads_as_lost_contact():
    assert dist.lost_contact(RuntimeError("[../gloo/transport/tcp/pair.cc:545] Read error: Connection reset by peer"))
    assert not dist.lost_contact(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
