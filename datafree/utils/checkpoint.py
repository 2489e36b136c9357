"""Atomic checkpoint files that ``torch.load(weights_only=True)`` can read, holding exactly what they say.

``torch.save`` writes the whole storage behind every tensor: a slice of a batch or a row of a
pool would carry its neighbours into the file (other shards' images, in a data set that is
handed out). Every tensor datafree saves goes through :func:`owned` first, in :func:`torch_bytes`
and :func:`atomic_save`, the only two ways it writes torch files.
"""
from __future__ import annotations

import io
import os
import secrets
from pathlib import Path
from typing import BinaryIO, Callable

import torch


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None], durable: bool = False) -> Path:
    """``write(handle)`` into a temp file in the same folder, then rename: a crash never leaves half a file.

    ``durable`` also flushes the file to the disk before the rename, so that after a power cut
    the name points at the whole content (data set shards and their manifest need that).

    Every file datafree writes (checkpoints, states, shards, manifests, CSVs, pictures, logs) is
    made like any file a program creates: its mode is 0666 less the user's umask, so the umask
    alone decides who may read it (022, the usual one: everyone; 077: the user alone). One rule,
    since a checkpoint is no more private than the shards and reports written from it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _new_temp_file(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _new_temp_file(path: Path) -> tuple[int, Path]:
    """A new hidden file beside ``path``, opened for writing, with the umask's mode (mkstemp's would be 0600)."""
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), tmp
        except FileExistsError:
            continue


def owned(obj):
    """``obj`` (nested dicts, lists, tuples) with every tensor owning exactly its own elements.

    A tensor whose storage holds more (a view) or less (an expanded one) is copied; the others are kept as they are.
    """
    if isinstance(obj, torch.Tensor):
        if obj.layout != torch.strided or obj.untyped_storage().nbytes() == obj.numel() * obj.element_size():
            return obj
        return obj.clone(memory_format=torch.contiguous_format)
    if isinstance(obj, dict):
        return type(obj)((key, owned(value)) for key, value in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(owned(value) for value in obj)
    return obj


def torch_bytes(obj) -> bytes:
    """What ``torch.save`` writes for ``obj``, every tensor in it owning exactly its elements (:func:`owned`)."""
    buffer = io.BytesIO()
    torch.save(owned(obj), buffer)
    return buffer.getvalue()


def atomic_save(obj, path: str | os.PathLike, durable: bool = False) -> Path:
    """``torch.save`` through :func:`atomic_write`, every tensor owning exactly its elements (:func:`owned`)."""
    obj = owned(obj)
    return atomic_write(path, lambda handle: torch.save(obj, handle), durable=durable)


def atomic_write_bytes(data: bytes, path: str | os.PathLike) -> Path:
    """Bytes through :func:`atomic_write`, flushed to the disk before the rename."""
    return atomic_write(path, lambda handle: handle.write(data), durable=True)


def cpu_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of the state dict (compiled and wrapped modules unwrapped)."""
    module = getattr(module, "_orig_mod", module)
    return {k: v.detach().to("cpu").clone() for k, v in module.state_dict().items()}
