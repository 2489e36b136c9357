"""Files datafree writes: every tensor in them owns exactly its elements, and their mode follows the umask."""
import os

import pytest
import torch
from torch import nn

from datafree.teachers import ClassifierInfo, save_classifier
from datafree.utils.checkpoint import atomic_save, owned
from datafree.utils.run_state import StateFiles


def _owns(t: torch.Tensor) -> bool:
    return t.untyped_storage().nbytes() == t.numel() * t.element_size()


def test_views_are_saved_as_their_own_elements_and_nothing_else(tmp_path):
    block = torch.arange(1000.0)
    rows = block.view(100, 10)
    obj = {"slice": block[10:20], "nested": [(rows[5], rows[:, 0])], "broadcast": torch.zeros(1).expand(50),
           "whole": rows.t(), "plain": 3}
    atomic_save(obj, tmp_path / "a.pt")
    back = torch.load(tmp_path / "a.pt", weights_only=True)
    assert torch.equal(back["slice"], block[10:20]) and torch.equal(back["nested"][0][1], rows[:, 0])
    assert all(_owns(t) for t in (back["slice"], *back["nested"][0], back["broadcast"], back["whole"]))
    assert owned(obj)["whole"] is obj["whole"]  # a tensor that owns its storage is not copied
    assert (tmp_path / "a.pt").stat().st_size < 4000 + 4 * 1000 + 4 * 50  # the block once (whole), not four times


def test_checkpoints_and_state_files_hold_only_their_own_tensors(tmp_path):
    big = torch.zeros(4096, 4)
    net = nn.Linear(4, 2)
    net.weight = nn.Parameter(big[:2])  # a parameter that is a view into a larger buffer
    save_classifier(tmp_path / "net.pt", net, ClassifierInfo("linear", 2, (1, 2, 2), (0.0,), (1.0,)))
    StateFiles(tmp_path).save({"pool": big[:3]})
    for name in ("net.pt", "state_last.pt"):
        assert (tmp_path / name).stat().st_size < 16 * 1024, name
        blob = torch.load(tmp_path / name, weights_only=True)
        tensors = [*blob["state_dict"].values()] if name == "net.pt" else [blob["pool"]]
        assert all(_owns(t) for t in tensors), name


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_every_file_follows_the_umask(tmp_path, umask, mode):
    """Checkpoints, states, shards, manifest, PNGs and CSV alike: the umask decides who may read them."""
    from fakes import AimingSynthesizer, red_teacher
    from datafree.export import synthesize_dataset

    previous = os.umask(umask)
    try:
        save_classifier(tmp_path / "net.pt", nn.Linear(4, 2), ClassifierInfo("linear", 2, (1, 2, 2), (0.0,), (1.0,)))
        StateFiles(tmp_path).save({"step": 1})
        synthesize_dataset(red_teacher(), AimingSynthesizer(batch_size=8), tmp_path / "set", 8, shard_size=4,
                           format="both", progress=False, log=lambda _: None)
    finally:
        os.umask(previous)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert {p.suffix for p in files} >= {".pt", ".json", ".png", ".csv", ".npy"}
    assert {p.relative_to(tmp_path).as_posix(): oct(p.stat().st_mode & 0o777) for p in files} == {
        p.relative_to(tmp_path).as_posix(): oct(mode) for p in files}
