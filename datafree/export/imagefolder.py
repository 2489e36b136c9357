"""The ImageFolder view of a synthetic data set, for tools that read folders of PNGs.

Layout under ``imagefolder/``: ``<class_name>/<index>.png`` for every sample, and two
sidecar files next to the class folders (ImageFolder readers skip files at the top):
``labels.csv`` (``index,file,label,class``, one row per sample in index order) and
``logits.npy`` (float16, samples x classes, row i = index i), the teacher's logits on
exactly the stored pixels. PNG is lossless, so the pixels read back are the ones written.
"""
from __future__ import annotations

import csv
import io
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch
from PIL import Image

from datafree.errors import DatafreeError
from datafree.export.samples import Samples
from datafree.utils.checkpoint import atomic_write, atomic_write_bytes

ROOT = "imagefolder"
LABELS = "labels.csv"
LOGITS = "logits.npy"
_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}
_READ_CHUNK = 4096


def supports_channels(channels: int) -> bool:
    return channels in _MODES


def folder_names(classes: list[str]) -> list[str]:
    """A safe, unique folder name per class: other characters become '_', clashes get the class index."""
    names = []
    for index, name in enumerate(classes):
        safe = re.sub(r"[^A-Za-z0-9._ -]", "_", str(name)).strip().lstrip(".") or f"class_{index}"
        names.append(safe)
    if len(set(names)) != len(names):
        names = [f"{index:0{len(str(len(classes)))}d}_{name}" for index, name in enumerate(names)]
    return names


def _encode_png(image: np.ndarray) -> bytes:
    channels = image.shape[2]
    array = image[:, :, 0] if channels == 1 else image
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")  # mode from the shape: L, LA, RGB, RGBA
    return buffer.getvalue()


def _write_png(path: Path, image: np.ndarray) -> None:
    path.write_bytes(_encode_png(image))


def write_image_folder(folder: str | os.PathLike, parts: Iterable[Samples], classes: list[str], count: int,
                       workers: int | None = None) -> list[str]:
    """Write every sample of ``parts`` (index order, ``count`` in all) under ``folder/imagefolder``.

    Returns the written files relative to ``folder``, for the manifest. PNGs are written in
    a thread pool (zlib releases the GIL); the sidecars are written last, atomically.
    """
    folder = Path(folder)
    root = folder / ROOT
    names = folder_names(classes)
    root.mkdir(parents=True, exist_ok=True)
    width = max(6, len(str(max(0, count - 1))))
    rows: list[tuple[int, str, int, str]] = []
    logits_parts: list[np.ndarray] = []
    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for part in parts:
            pixels = part.images.permute(0, 2, 3, 1).contiguous().numpy()
            labels, indices = part.labels.tolist(), part.indices.tolist()
            files = [f"{ROOT}/{names[label]}/{index:0{width}d}.png" for label, index in zip(labels, indices)]
            for label in set(labels):  # only classes with samples: ImageFolder readers refuse empty class folders
                (root / names[label]).mkdir(exist_ok=True)
            list(pool.map(_write_png, [folder / f for f in files], pixels))
            rows.extend(zip(indices, files, labels, (classes[label] for label in labels)))
            logits_parts.append(part.logits.numpy())
    logits = np.concatenate(logits_parts) if logits_parts else np.zeros((0, len(classes)), dtype=np.float16)
    if len(rows) != count or [r[0] for r in rows] != list(range(count)):
        raise DatafreeError(f"the ImageFolder export got {len(rows)} samples out of index order (expected 0..{count - 1}): "
                            "the shards do not match their manifest; run 'datafree inspect' on the folder.")

    def write_csv(handle) -> None:
        text = io.TextIOWrapper(handle, encoding="utf-8", newline="")
        writer = csv.writer(text)
        writer.writerow(["index", "file", "label", "class"])
        writer.writerows((index, file[len(ROOT) + 1:], label, name) for index, file, label, name in rows)
        text.flush()
        text.detach()

    atomic_write(root / LABELS, write_csv, durable=True)
    buffer = io.BytesIO()
    np.save(buffer, logits.astype(np.float16))
    atomic_write_bytes(buffer.getvalue(), root / LOGITS)
    return [f for _, f, _, _ in rows] + [f"{ROOT}/{LABELS}", f"{ROOT}/{LOGITS}"]


def _read_png(path: Path, channels: int) -> np.ndarray:
    with Image.open(path) as image:
        if image.mode != _MODES[channels]:
            raise DatafreeError(f"{path} is a {image.mode} image but the data set has {channels} channels "
                                f"({_MODES[channels]}): the file was replaced; restore it or export the set again.")
        array = np.asarray(image)
    return array[:, :, None] if array.ndim == 2 else array


def read_image_folder(folder: str | os.PathLike, image_shape: tuple[int, int, int], num_classes: int,
                      chunk: int = _READ_CHUNK, workers: int | None = None) -> Iterator[Samples]:
    """The samples of ``folder/imagefolder`` in index order, ``chunk`` at a time (the sidecars say which file is which)."""
    root = Path(folder) / ROOT
    try:
        with (root / LABELS).open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        logits = np.load(root / LOGITS, mmap_mode="r")
    except (OSError, ValueError, csv.Error) as exc:
        raise DatafreeError(f"the ImageFolder sidecars in {root} cannot be read ({exc}): they are missing or damaged; "
                            "'datafree inspect' on the folder lists what differs from the manifest.") from None
    if logits.shape != (len(rows), num_classes) or logits.dtype != np.float16:
        raise DatafreeError(f"{root / LOGITS} holds {logits.dtype} logits of shape {logits.shape}, expected float16 "
                            f"{(len(rows), num_classes)}: the sidecar does not match {LABELS}.")
    channels = image_shape[0]
    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for start in range(0, len(rows), chunk):
            block = rows[start:start + chunk]
            pixels = np.stack(list(pool.map(lambda row: _read_png(root / row["file"], channels), block)))
            if tuple(pixels.shape[1:]) != (image_shape[1], image_shape[2], channels):
                raise DatafreeError(f"the PNGs in {root} are {pixels.shape[1]}x{pixels.shape[2]}x{pixels.shape[3]}, but the "
                                    f"data set's images are {image_shape[1]}x{image_shape[2]}x{channels}.")
            yield Samples(
                images=torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous(),
                logits=torch.from_numpy(np.array(logits[start:start + len(block)])),
                labels=torch.tensor([int(row["label"]) for row in block], dtype=torch.int64),
                indices=torch.tensor([int(row["index"]) for row in block], dtype=torch.int64),
            )
