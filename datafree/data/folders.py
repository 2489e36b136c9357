"""ImageFolder directories and tarballs of them, decoded in parallel and cached as ``.pt``.

Layout (both kinds): one folder per class, images anywhere below it::

    <root>/<class>/<image>.jpg            or    <root>/<top>/<class>/<image>.jpg

where ``<top>`` is a single wrapping folder (``train/`` in the shared CIFAR-10
archives). Class names are sorted; images within a class are sorted by path.
Files whose suffix is not an image suffix, hidden files and ``__MACOSX`` folders
are skipped; files lying directly in ``<root>`` (not in a class folder) are ignored.

The decoded set is cached in ``$DATAFREE_CACHE`` (default ``~/.cache/datafree``)
as a ``torch.load(weights_only=True)``-readable file, keyed by the absolute path,
size and modification time of the source (every file's, for a folder) and the
requested ``image_size`` and ``channels``; a second load of the same source takes well under a second.
"""
from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
import sys
import tarfile
import warnings
import zlib
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch

from datafree.data.dataset import ImageDataset
from datafree.errors import DatafreeError, ImageSizesDiffer
from datafree.utils.checkpoint import atomic_save
from datafree.utils.device import available_memory

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"})
TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar")
UNLABELLED = "unlabelled"  # the one class of images read without labels (labelled=False)

# Bump when the cached layout or the decoding changes, so stale caches are not reused.
_CACHE_VERSION = 1
# Below this many images decoding runs inline: a worker pool costs more than it saves.
_MIN_PARALLEL = 2048
# A decode task holds at most this many images / bytes.
_CHUNK_IMAGES = 1024
_CHUNK_BYTES = 8 << 20


# ---------------------------------------------------------------------- cache
def cache_dir() -> Path:
    """``$DATAFREE_CACHE`` if set, else ``~/.cache/datafree`` (created on first write)."""
    env = os.environ.get("DATAFREE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "datafree"


def _cache_file(source: Path, key_parts: Iterable[str]) -> Path:
    digest = hashlib.sha256()
    for part in (f"v{_CACHE_VERSION}", *key_parts):
        digest.update(part.encode("utf-8", "surrogateescape"))
        digest.update(b"\0")
    stem = source.name
    for suffix in TAR_SUFFIXES:
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    stem = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in stem)[:60] or "data"
    return cache_dir() / f"{stem}-{digest.hexdigest()[:20]}.pt"


def _read_cache(file: Path) -> ImageDataset | None:
    if not file.is_file():
        return None
    try:
        blob = torch.load(file, map_location="cpu", weights_only=True)
        if not isinstance(blob, dict) or blob.get("version") != _CACHE_VERSION:
            raise ValueError("unexpected content")
        return ImageDataset(images=blob["images"], labels=blob["labels"], classes=list(blob["classes"]))
    except Exception:  # corrupt, truncated or foreign file: rebuild it
        warnings.warn(f"ignoring the damaged cache file {file}: rebuilding it", stacklevel=3)
        return None


def _write_cache(file: Path, dataset: ImageDataset) -> None:
    """Atomic (readers never see half a file) and flushed to the disk: a cut power leaves no corrupt cache."""
    try:
        atomic_save({"version": _CACHE_VERSION, "images": dataset.images, "labels": dataset.labels,
                     "classes": list(dataset.classes)}, file, durable=True)
    except OSError as exc:  # read-only home, full disk, ...: loading still works, just uncached
        warnings.warn(
            f"could not write the data cache {file} ({exc}); set DATAFREE_CACHE to a writable folder to cache decoded images",
            stacklevel=3,
        )


# ---------------------------------------------------------------------- decoding
# PIL modes by the channel count they decode to when the caller asks for none (``channels=None``).
_GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
_MODES = {1: "L", 3: "RGB", 4: "RGBA"}
# Grey images of more than 8 bits (16-bit PNGs and TIFFs of X-rays and microscopes, 32-bit integer or float TIFFs):
# PIL's conversion to 8 bits clips them at 255 (a 16-bit image turns white), so they are read as 8 bits only when
# every value already is one; any other is refused, since the windowing that maps them to 8 bits is the data's.
_DEEP_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


def _as_8_bits(im, name: str):
    """A grey image of more than 8 bits as an 8-bit one ("L") when its values are whole numbers in 0..255."""
    from PIL import Image

    values = np.asarray(im)
    if values.size and (values.min() < 0 or values.max() > 255 or not np.array_equal(values, np.round(values))):
        low, high = values.min(), values.max()
        raise DatafreeError(
            f"image {name} holds values {low:g}..{high:g} (PIL mode {im.mode}: more than 8 bits), and datafree reads "
            "8-bit images: converting here would clip them at 255. Convert the images to 8 bits with the windowing "
            "they need, one for the whole set (e.g. (pixels - low) * 255 / (high - low), clipped, saved as PNG)."
        )
    return Image.fromarray(values.astype(np.uint8), "L")


def _natural_channels(im) -> int:
    """1 for grey images, 4 for images with an alpha channel, 3 for every other (colour) image."""
    if im.mode in _GREY_MODES:
        return 1
    if im.mode in ("RGBA", "RGBa", "PA") or (im.mode == "P" and "transparency" in im.info):
        return 4
    return 3


def _decode_chunk(items: list, names: list[str], image_size: int | None, channels: int | None = 3) -> np.ndarray:
    """Decode a list of encoded images (bytes or file paths) into an N x H x W x C uint8 array.

    ``channels`` 1, 3 or 4 converts every image to grey, RGB or RGBA; None keeps each image's own
    kind (:func:`_natural_channels`), and a chunk that mixes kinds becomes RGB (see :func:`_common_channels`).
    Runs in a worker process or thread; only touches PIL and numpy.
    """
    from PIL import Image, UnidentifiedImageError

    arrays = []
    first_shape = None
    for item, name in zip(items, names):
        try:
            with Image.open(io.BytesIO(item) if isinstance(item, (bytes, bytearray)) else item) as im:
                mode = _MODES[channels if channels is not None else _natural_channels(im)]
                if im.mode in _DEEP_MODES:
                    im = _as_8_bits(im, name)
                if image_size is not None and im.format == "JPEG":
                    im.draft(mode if mode != "RGBA" else "RGB", (image_size, image_size))  # DCT-domain downscale
                im = im.convert(mode)
                if image_size is not None and im.size != (image_size, image_size):
                    im = im.resize((image_size, image_size), Image.Resampling.BILINEAR)
                arr = np.asarray(im, dtype=np.uint8)
                if arr.ndim == 2:
                    arr = arr[:, :, None]
        except DatafreeError:  # already says what to change (an image of more than 8 bits)
            raise
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
            raise DatafreeError(
                f"could not decode image {name} ({type(exc).__name__}: {exc}): delete or replace that file "
                "(or rebuild the archive without it)."
            ) from None
        if first_shape is None:
            first_shape = (arr.shape, name)
        elif arr.shape[:2] != first_shape[0][:2]:
            raise _size_error(first_shape[1], first_shape[0], name, arr.shape)
        arrays.append(arr)
    if not arrays:
        return np.zeros((0, 1, 1, channels or 3), np.uint8)
    return np.stack(_common_channels(arrays))


def _common_channels(arrays: list[np.ndarray]) -> list[np.ndarray]:
    """H x W x C arrays (one or several images each) brought to one channel count.

    When they differ, everything becomes RGB as PIL's convert("RGB") makes it: grey repeated, alpha dropped.
    """
    if len({a.shape[-1] for a in arrays}) <= 1:
        return arrays
    return [np.repeat(a, 3, axis=-1) if a.shape[-1] == 1 else a[..., :3] for a in arrays]


def _size_error(name_a: str, shape_a, name_b: str, shape_b) -> ImageSizesDiffer:
    return ImageSizesDiffer(
        f"images differ in size (height x width): {name_a} is {shape_a[0]}x{shape_a[1]} but {name_b} is "
        f"{shape_b[0]}x{shape_b[1]}: "
        "pass image_size=N (data.image_size=N in a recipe) to resize every image to N x N."
    )


def _fork_is_safe() -> bool:
    return sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()


def _make_executor(workers: int) -> Executor:
    # JPEG/PNG decoding of small images is dominated by Python-level PIL overhead that
    # holds the GIL, so processes beat threads (measured: 2 threads are slower than 1).
    # Workers are forked (no re-import of torch); they only run PIL and numpy.
    if _fork_is_safe():
        return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
    return ThreadPoolExecutor(workers)


class _Decoder:
    """Collects encoded images into chunks and decodes them inline or in a pool, in order."""

    def __init__(self, image_size: int | None, workers: int | None, expected: int | None = None,
                 channels: int | None = 3):
        self.image_size = image_size
        self.channels = channels
        self.workers = max(1, int(workers if workers is not None else (os.cpu_count() or 1)))
        self.expected = expected
        self.names: list[str] = []
        self._items: list = []
        self._chunk_names: list[str] = []
        self._chunk_bytes = 0
        self._results: list[Future | np.ndarray] = []
        self._chunks: list[tuple[list, list[str]]] = []
        self._pending: list[tuple[list, list[str]]] = []  # chunks waiting for the pool decision
        self._pool: Executor | None = None
        self._broken = False
        self._inline = self.workers == 1 or (expected is not None and expected < _MIN_PARALLEL)

    def add(self, item, name: str) -> None:
        self._items.append(item)
        self._chunk_names.append(name)
        self.names.append(name)
        self._chunk_bytes += len(item) if isinstance(item, (bytes, bytearray)) else 0
        if len(self._items) >= _CHUNK_IMAGES or self._chunk_bytes >= _CHUNK_BYTES:
            self._flush()

    def _flush(self) -> None:
        if not self._items:
            return
        chunk = (self._items, self._chunk_names)
        self._items, self._chunk_names, self._chunk_bytes = [], [], 0
        if self._inline:
            self._results.append(_decode_chunk(*chunk, self.image_size, self.channels))
            return
        self._pending.append(chunk)
        # Streams of unknown length start the pool once they are big enough to pay for it.
        if self._pool is None and sum(len(c[0]) for c in self._pending) < _MIN_PARALLEL:
            return
        if self._pool is None:
            with warnings.catch_warnings():  # Python >= 3.12 warns about fork() in threaded processes
                warnings.filterwarnings("ignore", message=".*fork.*", category=DeprecationWarning)
                self._pool = _make_executor(self.workers)
                self._submit_pending()
        else:
            self._submit_pending()

    def _submit_pending(self) -> None:
        pending, self._pending = self._pending, []
        for items, names in pending:
            self._chunks.append((items, names))  # kept (encoded, small) to retry if the pool breaks
            if self._broken:
                self._results.append(None)
                continue
            try:
                self._results.append(self._pool.submit(_decode_chunk, items, names, self.image_size, self.channels))
            except (OSError, RuntimeError) as exc:  # cannot fork (sandbox, process limits), pool broken, ...
                warnings.warn(f"image decoding workers failed ({exc}); decoding in this process", stacklevel=4)
                self._broken = True
                self._results.append(None)

    def finish(self) -> np.ndarray:
        """All decoded images, N x H x W x 3 uint8, in the order they were added."""
        self._flush()
        for chunk in self._pending:  # small stream: never worth a pool
            self._results.append(_decode_chunk(*chunk, self.image_size, self.channels))
        self._pending = []
        arrays = None
        try:
            if not self._broken:
                arrays = [r.result() if isinstance(r, Future) else r for r in self._results]
        except BrokenProcessPool:
            # A worker died (killed for memory, say): decode everything again here, slowly but surely.
            warnings.warn("an image decoding worker process died; decoding again in this process", stacklevel=3)
        finally:
            self.close()
        if arrays is None:
            arrays = [_decode_chunk(items, names, self.image_size, self.channels) for items, names in self._chunks]
        self._chunks, self._results = [], []
        # Check sizes across chunks (each chunk is uniform already).
        arrays = _common_channels([a for a in arrays if a.shape[0]])
        offset = 0
        first = None
        for arr in arrays:
            if first is None:
                first = (arr.shape[1:], self.names[offset])
            elif arr.shape[1:3] != first[0][:2]:
                raise _size_error(first[1], first[0], self.names[offset], arr.shape[1:])
            offset += arr.shape[0]
        if not arrays:
            return np.zeros((0, self.image_size or 1, self.image_size or 1, self.channels or 3), np.uint8)
        return np.concatenate(arrays) if len(arrays) > 1 else arrays[0]

    def close(self) -> None:
        if self._pool is not None:
            try:
                self._pool.shutdown(wait=True, cancel_futures=True)
            except Exception:  # a broken pool may complain while shutting down; nothing left to save
                pass
            self._pool = None


# ---------------------------------------------------------------------- layout
def _is_image(parts: tuple[str, ...]) -> bool:
    if any(p.startswith(".") or p == "__MACOSX" for p in parts):
        return False
    return os.path.splitext(parts[-1])[1].lower() in IMAGE_SUFFIXES


def _assign_classes(paths: list[tuple[str, ...]], source: Path,
                    labelled: bool = True) -> tuple[list[str], list[int], list[int]]:
    """From relative paths (tuples of parts) of image files to (classes, kept positions, labels).

    Kept positions are sorted by (class, path); a single top-level wrapping folder is unwrapped. Not ``labelled``:
    every image at any depth, sorted by path, in one class named ``unlabelled``.
    """
    if not paths:
        raise _no_images(source, labelled)
    if not labelled:
        return [UNLABELLED], sorted(range(len(paths)), key=lambda i: paths[i]), [0] * len(paths)
    if len({p[0] for p in paths}) == 1 and all(len(p) >= 3 for p in paths):
        paths = [p[1:] for p in paths]  # <top>/<class>/<image>
    keep = [i for i, p in enumerate(paths) if len(p) >= 2]
    if not keep:
        raise _no_images(source)
    classes = sorted({paths[i][0] for i in keep})
    index = {c: k for k, c in enumerate(classes)}
    keep.sort(key=lambda i: (index[paths[i][0]], paths[i]))
    labels = [index[paths[i][0]] for i in keep]
    return classes, keep, labels


def _refuse_empty_classes(root: Path, classes: list[str]) -> None:
    """A class folder holding no image would be left out, and the data set would have a class fewer than the folders
    say (a teacher for 3 classes where the user made 4 folders): refused, naming the folders."""
    def folders(path: Path) -> list[str]:
        return sorted(d.name for d in path.iterdir() if d.is_dir() and not d.name.startswith(".") and d.name != "__MACOSX")

    parent = root
    if not set(classes) <= set(folders(root)):  # the classes sit under one top-level folder (<top>/<class>/<image>)
        tops = folders(root)
        if len(tops) != 1:
            return
        parent = root / tops[0]
    empty = [name for name in folders(parent) if name not in classes]
    if empty:
        raise DatafreeError(
            f"the class folder{'s' if len(empty) > 1 else ''} {', '.join(empty)} in {parent} "
            f"{'hold' if len(empty) > 1 else 'holds'} no images (image suffixes read: {', '.join(sorted(IMAGE_SUFFIXES))}): "
            f"add the class's images, or remove the folder (the {len(classes)} others hold images)."
        )


def _no_images(source: Path, labelled: bool = True) -> DatafreeError:
    if not labelled:
        return DatafreeError(f"no images found in {source} (at any depth); image suffixes read: "
                             f"{', '.join(sorted(IMAGE_SUFFIXES))}.")
    return DatafreeError(
        f"no images found in {source}: it must hold one folder per class with the images inside "
        f"(<class>/<name>.jpg, optionally under one top-level folder such as train/); "
        f"image suffixes read: {', '.join(sorted(IMAGE_SUFFIXES))}."
    )


def _check_channels(channels) -> int | None:
    if channels is not None and channels not in _MODES:
        raise DatafreeError(f"channels must be None (the images' own), 1 (grey), 3 (RGB) or 4 (RGBA), got {channels!r}: "
                            "set data.channels to one of them.")
    return None if channels is None else int(channels)


def _check_image_size(image_size) -> int | None:
    if image_size is None:
        return None
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < 1:
        raise DatafreeError(f"image_size must be a positive int or None, got {image_size!r}: set data.image_size=32 (say) or null.")
    return int(image_size)


def _missing(path: Path, what: str) -> DatafreeError:
    return DatafreeError(f"data path {path} does not exist: give {what} (in a recipe: data.root, the folder holding it).")


def _to_dataset(array: np.ndarray, keep: list[int], labels: list[int], classes: list[str]) -> ImageDataset:
    images = torch.from_numpy(array)
    order = torch.as_tensor(keep, dtype=torch.int64)
    if not torch.equal(order, torch.arange(len(keep))):
        images = images.index_select(0, order)
    images = images.permute(0, 3, 1, 2).contiguous()
    return ImageDataset(images=images, labels=torch.as_tensor(labels, dtype=torch.int64), classes=classes)


# ---------------------------------------------------------------------- folders
def _walk_images(root: Path) -> Iterator[tuple[tuple[str, ...], Path]]:
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__MACOSX")
        rel = Path(dirpath).relative_to(root).parts
        for name in sorted(filenames):
            parts = (*rel, name)
            if _is_image(parts):
                yield parts, Path(dirpath) / name


def _folder(path: str | os.PathLike, labelled: bool = True) -> Path:
    root = Path(path).expanduser()
    what = "the folder that holds one sub-folder per class" if labelled else "the folder that holds the images"
    if not root.exists():
        raise _missing(root, "an ImageFolder directory (one sub-folder per class)" if labelled else
                       "a folder of images")
    if not root.is_dir():
        hint = " (it looks like an archive: use data=cifar10_jpeg / kind=tarball for it)" if root.name.lower().endswith(TAR_SUFFIXES) else ""
        raise DatafreeError(f"{root} is a file, not a folder{hint}: give {what}.")
    return root.resolve()


def image_folder_classes(path: str | os.PathLike) -> list[str]:
    """The classes :func:`load_image_folder` finds in ``path`` (its sub-folders holding images), read from the file
    names alone: no image is decoded."""
    root = _folder(path)
    classes = _assign_classes([parts for parts, _ in _walk_images(root)], root)[0]
    _refuse_empty_classes(root, classes)
    return classes


def load_image_folder(
    path: str | os.PathLike,
    image_size: int | None = None,
    *,
    channels: int | None = None,
    cache: bool = True,
    workers: int | None = None,
    labelled: bool = True,
) -> ImageDataset:
    """Load an ImageFolder directory (one sub-folder per class) into an :class:`ImageDataset`.

    Images are resized to ``image_size`` x ``image_size`` when given; otherwise they must all
    share one size. ``channels`` 1, 3 or 4 converts them to grey, RGB or RGBA; None keeps their
    own kind (grey if every image is grey, RGBA if every image has alpha, else RGB).
    ``workers`` defaults to ``os.cpu_count()``. ``labelled=False`` reads every image at any depth, folders or
    not, as one class named ``unlabelled`` (images without labels: a proxy set).
    """
    image_size, channels = _check_image_size(image_size), _check_channels(channels)
    root = _folder(path, labelled)
    found = list(_walk_images(root))
    classes, keep, labels = _assign_classes([p for p, _ in found], root, labelled)
    if labelled:
        _refuse_empty_classes(root, classes)
    files = [found[i][1] for i in keep]

    cache_file = None
    if cache:
        listing = hashlib.sha256()
        for f in files:
            st = f.stat()
            listing.update(f"{f.relative_to(root)}|{st.st_size}|{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
        cache_file = _cache_file(root, ("folder", str(root), listing.hexdigest(), str(image_size), str(channels),
                                        *(() if labelled else ("unlabelled",))))
        cached = _read_cache(cache_file)
        if cached is not None:
            return cached

    _check_memory(files, image_size, channels, root)
    decoder = _Decoder(image_size, workers, expected=len(files), channels=channels)
    try:
        for f in files:
            decoder.add(str(f), str(f))
        array = decoder.finish()
    finally:
        decoder.close()
    dataset = _to_dataset(array, list(range(len(files))), labels, classes)
    if cache_file is not None:
        _write_cache(cache_file, dataset)
    return dataset


def _check_memory(files: list[Path], image_size: int | None, channels: int | None, root: Path) -> None:
    """Before any image is decoded: do they fit in memory as uint8 at the size they will be read? The first image's
    header stands for all (they must share a size when read at their own). A folder of 12-megapixel photographs read
    at its own size takes 36 MB an image: one line naming data.image_size, rather than the machine running out."""
    free = available_memory()
    if not files or free is None:
        return
    from PIL import Image

    try:
        with Image.open(files[0]) as im:
            width, height = im.size
            depth = channels or _natural_channels(im)
    except (OSError, ValueError, SyntaxError):
        return  # the decoder names a file it cannot read
    height, width = (image_size, image_size) if image_size else (height, width)
    need = len(files) * height * width * depth
    if need > free // 2:
        at_224 = len(files) * 224 * 224 * depth
        raise DatafreeError(
            f"{len(files)} images of {height}x{width} (height x width, {depth} channel(s)) in {root} take {need / 2**30:.1f} GiB as "
            f"uint8, more than half of the {free / 2**30:.1f} GiB of memory available: read them smaller with "
            f"data.image_size=N (image_size=N in Python; e.g. 224: {at_224 / 2**30:.1f} GiB), or use fewer images."
        )


# ---------------------------------------------------------------------- tarballs
def load_tarball(
    path: str | os.PathLike,
    image_size: int | None = None,
    *,
    channels: int | None = None,
    cache: bool = True,
    workers: int | None = None,
    labelled: bool = True,
) -> ImageDataset:
    """Load a ``.tar.gz`` / ``.tgz`` / ``.tar`` of an ImageFolder into an :class:`ImageDataset`.

    Members are read straight from the archive (nothing is extracted to disk) and decoded
    in a pool of ``workers`` (default ``os.cpu_count()``) while the archive is still being
    read. The archive may wrap the class folders in one top-level folder (``train/<class>/``).
    ``image_size``, ``channels`` and ``labelled`` as in :func:`load_image_folder`.
    """
    image_size, channels = _check_image_size(image_size), _check_channels(channels)
    file = Path(path).expanduser()
    if not file.exists():
        raise _missing(file, "a .tar.gz/.tgz/.tar of class folders such as train.tar.gz")
    if file.is_dir():
        raise DatafreeError(
            f"{file} is a folder, not an archive: give the .tar.gz file, or read the folder as an ImageFolder "
            "(data=imagefolder, load_image_folder)."
        )
    file = file.resolve()
    st = file.stat()
    cache_file = None
    if cache:
        cache_file = _cache_file(file, ("tar", str(file), str(st.st_size), str(st.st_mtime_ns), str(image_size),
                                        str(channels), *(() if labelled else ("unlabelled",))))
        cached = _read_cache(cache_file)
        if cached is not None:
            return cached

    decoder = _Decoder(image_size, workers, channels=channels)
    paths: list[tuple[str, ...]] = []
    try:
        try:
            # Stream mode ("r|*"): one sequential pass, compression detected automatically.
            with tarfile.open(file, mode="r|*") as archive:
                for member in archive:
                    if not member.isfile():
                        continue
                    parts = tuple(p for p in member.name.split("/") if p not in ("", "."))
                    if not parts or not _is_image(parts):
                        continue
                    handle = archive.extractfile(member)
                    if handle is None:
                        continue
                    decoder.add(handle.read(), f"{file}:{member.name}")
                    paths.append(parts)
        except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
            raise DatafreeError(
                f"could not read {file} as a tar archive ({type(exc).__name__}: {exc}): "
                "check that it is a complete .tar.gz/.tgz/.tar (re-download or re-create it)."
            ) from None
        classes, keep, labels = _assign_classes(paths, file, labelled)
        array = decoder.finish()
    finally:
        decoder.close()
    dataset = _to_dataset(array, keep, labels, classes)
    if cache_file is not None:
        _write_cache(cache_file, dataset)
    return dataset
