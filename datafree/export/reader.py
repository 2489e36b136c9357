"""Reading a synthetic data set: its manifest, its checks, and its samples shard by shard."""
from __future__ import annotations

import os
from typing import Iterator

from datafree.data.dataset import ImageDataset
from datafree.errors import DatafreeError
from datafree.export.imagefolder import read_image_folder
from datafree.export.manifest import data_set_folder, read_manifest, verify_files
from datafree.export.samples import Samples
from datafree.export.shards import read_shard


class SyntheticSet:
    """A synthetic data set folder (``datafree synthesize`` writes them), opened through its manifest.

    Nothing is loaded until asked for: :meth:`parts` yields the samples one shard (or one
    chunk of PNGs) at a time, :meth:`load` all of them.
    """

    def __init__(self, path: str | os.PathLike, key: str | None = None):
        """``key``: the recipe key that named ``path`` (``data.path``), for the message when it is not a set."""
        self.folder = data_set_folder(path, key)
        self.manifest = read_manifest(self.folder)

    # -- what it is ----------------------------------------------------------------------------------
    @property
    def classes(self) -> list[str]:
        return list(self.manifest["classes"])

    @property
    def num_classes(self) -> int:
        return len(self.manifest["classes"])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(int(v) for v in self.manifest["image_size"])

    @property
    def complete(self) -> bool:
        return bool(self.manifest.get("complete"))

    def __len__(self) -> int:
        return int(self.manifest["count"])

    @property
    def teacher(self) -> dict:
        return dict(self.manifest["teacher"])

    def class_counts(self) -> list[int]:
        return [int(c) for c in self.manifest["class_counts"]["written"]]

    @property
    def storage(self) -> str:
        """Where the samples are read from: ``shards`` when the set has them, else ``imagefolder``."""
        return "shards" if self.manifest["shards"] else "imagefolder"

    def __repr__(self) -> str:
        c, h, w = self.image_shape
        state = "" if self.complete else f", incomplete: {len(self)} of {self.manifest['n']}"
        return f"SyntheticSet({self.folder}, n={len(self)}, classes={self.num_classes}, size={c}x{h}x{w}{state})"

    # -- checks --------------------------------------------------------------------------------------
    def verify(self) -> list[str]:
        """Every way the files differ from the manifest (missing, truncated, altered); empty when all match."""
        return verify_files(self.folder, self.manifest)

    def require(self, what: str, verify: bool = True) -> "SyntheticSet":
        """Refuse an incomplete or (with ``verify``) damaged set for ``what``, with the reason and the fix."""
        if not self.complete:
            raise DatafreeError(f"{self.folder} is incomplete ({len(self)} of {self.manifest['n']} samples written): "
                                f"finish it by running its datafree synthesize command again, then {what}.")
        problems = self.verify() if verify else []
        if problems:
            shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
            raise DatafreeError(f"{self.folder} does not match its manifest ({shown}): restore the damaged files from "
                                f"the copy you received, or write the set again, before you {what}.")
        return self

    # -- samples -------------------------------------------------------------------------------------
    def parts(self) -> Iterator[Samples]:
        """All samples in index order, a shard (or a chunk of PNGs) at a time, on the CPU."""
        if self.storage == "shards":
            for entry in self.manifest["shards"]:
                samples = read_shard(self.folder / entry["file"])
                if len(samples) != int(entry["count"]) or (len(samples) and int(samples.indices[0]) != int(entry["start"])):
                    raise DatafreeError(f"{entry['file']} holds {len(samples)} samples from index "
                                        f"{int(samples.indices[0]) if len(samples) else '-'}, the manifest says "
                                        f"{entry['count']} from {entry['start']}: the shard was replaced.")
                self._check_shapes(samples, entry["file"])
                yield samples
        else:
            for samples in read_image_folder(self.folder, self.image_shape, self.num_classes):
                yield samples

    def shard_parts(self) -> list[tuple[str, int]]:
        """(file, count) of every shard: what a streaming reader plans with."""
        return [(entry["file"], int(entry["count"])) for entry in self.manifest["shards"]]

    def read(self, file: str) -> Samples:
        samples = read_shard(self.folder / file)
        self._check_shapes(samples, file)
        return samples

    def load(self) -> Samples:
        """Every sample at once (CPU)."""
        parts = list(self.parts())
        return Samples.cat(parts) if parts else Samples.empty(self.image_shape, self.num_classes)

    def as_image_dataset(self, samples: Samples | None = None) -> ImageDataset:
        """Images and teacher labels as an :class:`ImageDataset` (for code that reads labelled sets)."""
        samples = samples if samples is not None else self.load()
        return ImageDataset(images=samples.images, labels=samples.labels, classes=self.classes)

    def _check_shapes(self, samples: Samples, name: str) -> None:
        if tuple(samples.images.shape[1:]) != self.image_shape or samples.logits.shape[1] != self.num_classes:
            raise DatafreeError(f"{name} holds images of {list(samples.images.shape[1:])} with {samples.logits.shape[1]} "
                                f"logits, the manifest says {list(self.image_shape)} with {self.num_classes} classes: "
                                "the file belongs to another data set.")
        if len(samples) and (int(samples.labels.min()) < 0 or int(samples.labels.max()) >= self.num_classes):
            raise DatafreeError(f"{name} holds labels outside 0..{self.num_classes - 1}: the file was altered.")

