"""Shard files: a block of samples in one ``torch.load(weights_only=True)``-readable file.

A shard is a plain dict ``{"format", "version", "images", "logits", "labels", "indices"}``
(uint8, float16, int64, int64), written under a temporary name, flushed and renamed,
so that a shard name on disk always points at a whole file.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from datafree.errors import DatafreeError
from datafree.export.samples import Samples
from datafree.utils.checkpoint import atomic_write_bytes, torch_bytes

SHARD_FORMAT = "datafree.synthetic-shard"
SHARD_VERSION = 1
# What a shard may hold at most: small enough to copy, load and hash in a few seconds.
MAX_SHARD_BYTES = 256 << 20
# What a shard file holds beside its samples: the archive's headers and each tensor's alignment (about 2.4 KB).
SHARD_OVERHEAD = 4096


def shard_name(number: int) -> str:
    return f"shard_{number:05d}.pt"


def write_shard(path: str | Path, samples: Samples) -> dict:
    """Write ``samples`` (on the CPU) as one shard; returns its manifest entry's ``sha256`` and ``bytes``.

    The file holds these samples and nothing else, also when they are a slice of a larger block.
    """
    data = torch_bytes({"format": SHARD_FORMAT, "version": SHARD_VERSION, **samples.as_dict()})
    atomic_write_bytes(data, path)
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def read_shard(path: str | Path) -> Samples:
    """The samples of one shard file; a DatafreeError when it is not one."""
    path = Path(path)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DatafreeError(f"shard {path} is missing: the data set is incomplete; copy it again, or write it again "
                            "with the same datafree synthesize command.") from None
    except Exception:  # noqa: BLE001 - truncated, altered or foreign file; the reader's reason is about its internals
        raise DatafreeError(f"shard {path} cannot be read (damaged): 'datafree inspect' on its folder lists every file "
                            "that differs from the manifest.") from None
    if not isinstance(blob, dict) or blob.get("format") != SHARD_FORMAT:
        raise DatafreeError(f"{path} is not a datafree shard (no format {SHARD_FORMAT!r}): point at a folder written "
                            "by datafree synthesize.")
    return Samples(blob.get("images"), blob.get("logits"), blob.get("labels"), blob.get("indices")).check(f"shard {path}")


def sample_bytes(image_shape: tuple[int, int, int], num_classes: int) -> int:
    """Bytes one sample takes in a shard: pixels, float16 logits, label and index."""
    channels, height, width = image_shape
    return channels * height * width + 2 * num_classes + 16


def samples_per_shard(requested: int, image_shape: tuple[int, int, int], num_classes: int) -> int:
    """``requested``, lowered so that a shard file stays under :data:`MAX_SHARD_BYTES`."""
    return max(1, min(int(requested), (MAX_SHARD_BYTES - SHARD_OVERHEAD) // sample_bytes(image_shape, num_classes)))
