"""benchmarks/shard_checkpoint.py: a checkpoint split into float16 pieces joins back to float32 weights, from
plain pieces or from pieces xz-compressed where they lie."""
from __future__ import annotations

import lzma
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


def _shard(*args: object) -> str:
    done = subprocess.run([sys.executable, str(REPO / "benchmarks/shard_checkpoint.py"), *map(str, args)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def pieces(tmp_path):
    state = {"a.weight": torch.randn(300, 300), "b.weight": torch.randn(300, 300), "b.num": torch.tensor(7)}
    torch.save({"state_dict": state, "arch": "x"}, tmp_path / "teacher.pt")
    assert _shard("split", tmp_path / "teacher.pt", tmp_path / "p", "--max-mib", 0.2).startswith("2 pieces")
    return tmp_path, state


def _joined_matches(folder: Path, target: Path, state: dict) -> None:
    _shard("join", folder, target)
    blob = torch.load(target, weights_only=True)
    assert blob["arch"] == "x" and set(blob["state_dict"]) == set(state)
    for key, tensor in state.items():
        assert blob["state_dict"][key].dtype == tensor.dtype
        torch.testing.assert_close(blob["state_dict"][key], tensor.half().to(tensor.dtype) if tensor.is_floating_point()
                                   else tensor)


def test_pieces_join_back_to_float32(pieces):
    tmp_path, state = pieces
    _joined_matches(tmp_path / "p", tmp_path / "joined.pt", state)


def test_xz_compressed_pieces_join_the_same(pieces):
    tmp_path, state = pieces
    for file in (tmp_path / "p").iterdir():
        (tmp_path / "p" / (file.name + ".xz")).write_bytes(lzma.compress(file.read_bytes()))
        file.unlink()
    _joined_matches(tmp_path / "p", tmp_path / "joined.pt", state)


def test_a_folder_without_pieces_says_so(tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "benchmarks/shard_checkpoint.py"), "join", str(tmp_path),
                           str(tmp_path / "t.pt")], capture_output=True, text=True)
    assert done.returncode != 0 and "expected one *.meta.pt" in done.stderr and not (tmp_path / "t.pt").exists()
