"""Split a datafree checkpoint into float16 pieces under a size limit, and join them back.

The GPU machine returns files of at most 16 MiB; a ResNet-34 checkpoint is 85 MB.
    python benchmarks/shard_checkpoint.py split teacher.pt OUT_DIR [--max-mib 15]
    python benchmarks/shard_checkpoint.py join PIECES_DIR teacher.pt
Joining restores float32 weights; the half-precision round trip changes test
accuracy by well under 0.1 point (each distillation run re-measures it). Pieces may
be xz-compressed where they lie (`xz -9 PIECE.pt` -> PIECE.pt.xz, about a tenth
smaller): a command's carry (64 MiB with the working tree) then holds a larger teacher.
"""
from __future__ import annotations

import argparse
import io
import lzma
from pathlib import Path

import torch

from datafree.utils.checkpoint import atomic_save


def split(path: Path, out: Path, max_mib: float) -> None:
    blob = torch.load(path, map_location="cpu", weights_only=True)
    state = blob.pop("state_dict")
    out.mkdir(parents=True, exist_ok=True)
    pieces, current, size = [], {}, 0
    for key, tensor in state.items():
        t = tensor.half() if tensor.is_floating_point() else tensor
        nbytes = t.numel() * t.element_size()
        if current and size + nbytes > max_mib * 2**20:
            pieces.append(current)
            current, size = {}, 0
        current[key] = t
        size += nbytes
    pieces.append(current)
    atomic_save({**blob, "pieces": len(pieces)}, out / f"{path.stem}.meta.pt")
    for i, piece in enumerate(pieces):
        atomic_save(piece, out / f"{path.stem}.{i}.pt")
    print(f"{len(pieces)} pieces in {out}")


def _load(file: Path) -> dict:
    """A piece as split wrote it, or its .xz where only that lies."""
    if file.exists():
        return torch.load(file, weights_only=True)
    with lzma.open(file.with_name(file.name + ".xz")) as packed:
        return torch.load(io.BytesIO(packed.read()), weights_only=True)


def join(folder: Path, path: Path) -> None:
    metas = sorted(folder.glob("*.meta.pt")) or sorted(folder.glob("*.meta.pt.xz"))
    if len(metas) != 1:
        raise SystemExit(f"{folder}: expected one *.meta.pt (or .meta.pt.xz) from split, found {len(metas)}")
    stem = metas[0].name.split(".meta.pt")[0]  # pieces keep the name they were split under
    meta = _load(folder / f"{stem}.meta.pt")
    state = {}
    for i in range(meta.pop("pieces")):
        for key, t in _load(folder / f"{stem}.{i}.pt").items():
            state[key] = t.float() if t.is_floating_point() else t
    atomic_save({**meta, "state_dict": state}, path)
    print(f"joined into {path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["split", "join"])
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    parser.add_argument("--max-mib", type=float, default=15.0)
    args = parser.parse_args()
    split(args.source, args.target, args.max_mib) if args.action == "split" else join(args.source, args.target)
