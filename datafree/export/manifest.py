"""``manifest.json``: what a synthetic data set is, where it came from, and a checksum of every file.

The manifest is the data set's source of truth: a file it does not list is not part
of the set (a shard written by a run killed before the manifest was updated), and a
listed file whose size or sha256 differs was damaged after it was written.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from torch import nn

from datafree.errors import DatafreeError
from datafree.utils.checkpoint import atomic_write_bytes

MANIFEST = "manifest.json"
FORMAT = "datafree.synthetic"
VERSION = 1
_HASH_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_HASH_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def file_entry(path: str | os.PathLike) -> dict:
    """The manifest's record of one file: its sha256 and size."""
    return {"sha256": sha256_file(path), "bytes": Path(path).stat().st_size}


def teacher_fingerprint(model: nn.Module) -> str:
    """sha256 of the teacher's weights: every state-dict entry's name, dtype, shape and bytes, in name order.

    Independent of the file the weights came from, so that the same teacher saved twice,
    moved or loaded from another source keeps its identity.
    """
    digest = hashlib.sha256()
    state = model.state_dict()
    for name in sorted(state):
        tensor = state[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{list(tensor.shape)}\n".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def data_set_folder(path: str | os.PathLike, key: str | None = None) -> Path:
    """The folder of a synthetic data set given as the folder or its manifest; checks that it is one. ``key``: the
    recipe key that named it (``data.path``), which the messages tell the user to point."""
    point = f"point {key} at" if key else "point at"
    if path is None:
        raise DatafreeError(f"no synthetic data set given: set {key or 'synthetic'}=DIR, a folder that datafree "
                            "synthesize wrote.")
    path = Path(path).expanduser()
    if path.is_file() and path.name == MANIFEST:
        path = path.parent
    if not path.exists():
        raise DatafreeError(f"{path} does not exist: {point} the folder that datafree synthesize wrote (it holds {MANIFEST}).")
    if not path.is_dir():
        raise DatafreeError(f"{path} is a file, not a synthetic data set: {point} the folder that datafree synthesize "
                            f"wrote (it holds {MANIFEST}).")
    if not (path / MANIFEST).is_file():
        raise DatafreeError(f"{path} holds no {MANIFEST}, so it is not a synthetic data set written by datafree synthesize "
                            f"(or its run stopped before it wrote anything): {point} such a folder.")
    return path


def read_manifest(folder: str | os.PathLike) -> dict:
    """The manifest of the data set in ``folder``; a DatafreeError when there is none or it is not datafree's."""
    folder = data_set_folder(folder)
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatafreeError(f"{path} cannot be read ({exc}): the manifest is damaged; restore it from the copy you "
                            "received, or write the data set again.") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DatafreeError(f"{path} is not the manifest of a datafree synthetic data set (no format {FORMAT!r}): "
                            "point at a folder written by datafree synthesize.")
    if int(manifest.get("version", 0)) > VERSION:
        raise DatafreeError(f"{path} was written by a newer datafree (manifest version {manifest.get('version')}, "
                            f"this one reads {VERSION}): upgrade datafree to read it.")
    problems = consistency_problems(manifest)
    if problems:
        raise DatafreeError(f"{path} contradicts itself ({'; '.join(problems)}): the manifest was edited or damaged; "
                            "restore it from the copy you received, or write the data set again.")
    return manifest


def write_manifest(folder: str | os.PathLike, manifest: dict) -> Path:
    """Atomically, flushed to the disk: the manifest changes only once the files it lists are complete."""
    data = json.dumps(manifest, indent=1, sort_keys=False).encode("utf-8")
    return atomic_write_bytes(data + b"\n", Path(folder) / MANIFEST)


def consistency_problems(manifest: dict) -> list[str]:
    """What in the manifest disagrees with itself: counts, index ranges, listed files."""
    problems = []
    try:
        shards = manifest["shards"]
        count, n, num_classes = int(manifest["count"]), int(manifest["n"]), len(manifest["classes"])
        written = [int(c) for c in manifest["class_counts"]["written"]]
        files = manifest["files"]
    except (KeyError, TypeError, ValueError) as exc:
        return [f"a required entry is missing or malformed ({type(exc).__name__}: {exc})"]
    start = 0
    for shard in shards:
        if int(shard["start"]) != start:
            problems.append(f"{shard['file']} starts at index {shard['start']}, expected {start}")
        start = int(shard["start"]) + int(shard["count"])
        if shard["file"] not in files:
            problems.append(f"{shard['file']} has no checksum")
    if shards and start != count:
        problems.append(f"the shards hold {start} samples but count is {count}")
    if count > n:
        problems.append(f"count {count} exceeds n {n}")
    if len(written) != num_classes or sum(written) != count:
        problems.append(f"the class counts {written} do not add up to count {count} over {num_classes} classes")
    if manifest.get("complete") and count != n:
        problems.append(f"marked complete with {count} of {n} samples")
    return problems


def verify_files(folder: str | os.PathLike, manifest: dict, names: list[str] | None = None) -> list[str]:
    """One line per listed file that is missing, has another size, or another sha256 (all when ``names`` is None)."""
    folder = Path(folder)
    problems = []
    for name in names if names is not None else list(manifest["files"]):
        entry = manifest["files"][name]
        path = folder / name
        if not path.is_file():
            problems.append(f"{name} is missing")
            continue
        size = path.stat().st_size
        if size != int(entry["bytes"]):
            problems.append(f"{name} has {size} bytes, the manifest says {entry['bytes']} ({'truncated' if size < int(entry['bytes']) else 'grown'})")
        elif sha256_file(path) != entry["sha256"]:
            problems.append(f"{name} differs from the manifest (sha256 {entry['sha256'][:12]}...): it was altered")
    return problems


def unlisted_files(folder: str | os.PathLike, manifest: dict) -> list[str]:
    """Files in the folder that the manifest does not list (the manifest itself and hidden run files aside)."""
    folder = Path(folder)
    listed = set(manifest["files"])
    found = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_file() and rel != MANIFEST and not any(part.startswith(".") for part in Path(rel).parts) and rel not in listed:
            found.append(rel)
    return found
