"""Writing a synthetic data set folder shard by shard, so that a killed run loses at most one shard.

Each shard is committed in three atomic steps: the shard file, the run state after it
(``.resume/after_<k>.pt``: what the synthesis loop needs to continue exactly there), and
then the manifest that lists it. A shard the manifest does not list does not exist, so a
kill at any moment leaves a folder whose manifest describes only complete, valid shards.
Once all ``n`` samples are written the ImageFolder view is exported when asked for, the
manifest is marked complete and the run states are removed.
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import torch

from datafree.version import __version__
from datafree.errors import DatafreeError
from datafree.export.imagefolder import ROOT as IMAGEFOLDER_ROOT
from datafree.export.imagefolder import write_image_folder
from datafree.export.manifest import FORMAT, MANIFEST, VERSION, file_entry, read_manifest, verify_files, write_manifest
from datafree.export.samples import Samples
from datafree.export.shards import read_shard, shard_name, write_shard
from datafree.utils.checkpoint import atomic_save
from datafree.utils.run_state import config_differences

RESUME = ".resume"
STATE_FORMAT = "datafree.synthesis-state"
FORMATS = ("shards", "imagefolder", "both")
# Recipe keys that may change between a run and its continuation: they do not change what is written
# (the teacher is identified by the sha256 of its weights, not by where its file lies; the folder may move).
CONTINUABLE = ("progress", "device", "teacher.checkpoint", "out", "dist_timeout_s")


@dataclasses.dataclass
class Start:
    """Where writing continues: the complete shards, and the run state saved after the last one (None: from scratch)."""

    shards: int
    count: int
    class_counts: list[int]
    state: dict | None
    complete: bool = False
    notices: list[str] = dataclasses.field(default_factory=list)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class SyntheticWriter:
    """The folder ``out`` of one synthetic data set; ``description`` is what the manifest says it is.

    ``description`` holds ``n``, ``classes``, ``image_size``, ``class_counts`` (``requested`` and
    ``target``), ``teacher`` (with its ``sha256``), ``synthesizer``, ``draw``, ``seed``, ``recipe``,
    ``format``, ``shard_size`` and ``processes`` (how many drew the samples, torchrun); a folder that already holds a data set is continued only when
    its description is the same (up to :data:`CONTINUABLE` recipe keys).
    """

    def __init__(self, out: str | Path, description: dict):
        self.folder = Path(out).expanduser()
        self.description = description
        if description["format"] not in FORMATS:
            raise DatafreeError(f"format={description['format']!r} is not a choice: give one of {', '.join(FORMATS)}.")
        self.manifest: dict = {}
        self._started = time.perf_counter()
        self._elapsed_before = 0.0

    # -- opening ---------------------------------------------------------------------------------------
    def open(self) -> Start:
        """Create the folder, or check and continue the data set it holds; refuses anything else, touching nothing."""
        folder = self.folder
        if folder.exists() and not folder.is_dir():
            raise DatafreeError(f"out={folder} is a file: choose a folder for the data set (a new or empty one).")
        if folder.is_dir() and (folder / MANIFEST).is_file():
            return self._continue()
        leftovers = [p for p in folder.iterdir() if not p.name.startswith(f".{MANIFEST}.")] if folder.is_dir() else []
        if leftovers:
            shown = ", ".join(sorted(p.name for p in leftovers)[:3])
            raise DatafreeError(f"out={folder} already holds other files ({shown}{', ...' if len(leftovers) > 3 else ''}) "
                                "and no synthetic data set: choose a new or empty folder for out=.")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for stale in folder.glob(f".{MANIFEST}.*"):  # a kill during the very first manifest write
                stale.unlink()
        except OSError as error:
            raise DatafreeError(f"out={folder} cannot be created ({error.strerror or error}): choose a writable folder.") from None
        num_classes = len(self.description["classes"])
        self.manifest = {
            "format": FORMAT, "version": VERSION, "complete": False, "n": int(self.description["n"]), "count": 0,
            "classes": list(self.description["classes"]), "image_size": list(self.description["image_size"]),
            "class_counts": {**self.description["class_counts"], "written": [0] * num_classes},
            "teacher": self.description["teacher"], "synthesizer": self.description["synthesizer"],
            "draw": self.description["draw"], "seed": self.description["seed"], "storage": self.description["format"],
            "shard_size": int(self.description["shard_size"]), "shards": [], "imagefolder": None, "files": {},
            "drawn": 0, "wall_time_s": 0.0, "created": _now(), "updated": _now(), "datafree": __version__,
            "recipe": self.description["recipe"], "processes": int(self.description.get("processes", 1)),
        }
        self._write_manifest()
        return Start(shards=0, count=0, class_counts=[0] * num_classes, state=None)

    def _differences(self, manifest: dict) -> list[str]:
        wanted = self.description
        diffs = []
        if manifest["teacher"].get("sha256") != wanted["teacher"]["sha256"]:
            diffs.append(f"teacher sha256 {manifest['teacher'].get('sha256', '?')[:12]}... -> {wanted['teacher']['sha256'][:12]}...")
        diffs += config_differences(manifest.get("recipe", {}), wanted["recipe"], allowed=CONTINUABLE)
        return diffs

    def _continue(self) -> Start:
        folder = self.folder
        manifest = read_manifest(folder)
        diffs = self._differences(manifest)
        if diffs and not manifest["shards"]:  # a run of other settings that stopped before its first shard: nothing
            for path in (folder / RESUME, folder / "imagefolder"):  # of it to keep (e.g. refused for a rare class)
                shutil.rmtree(path, ignore_errors=True)
            for path in (folder / MANIFEST, *folder.glob(".*.tmp")):
                path.unlink(missing_ok=True)
            start = self.open()
            start.notices.append(f"out={folder} held no sample of an earlier run with other settings "
                                 f"({'; '.join(diffs[:2])}{'; ...' if len(diffs) > 2 else ''}): started afresh")
            return start
        if diffs:
            shown = "; ".join(diffs[:4]) + (f"; and {len(diffs) - 4} more" if len(diffs) > 4 else "")
            raise DatafreeError(f"out={folder} already holds a different synthetic data set ({shown}): choose another "
                                "out= folder, or delete that one to replace it.")
        self.manifest = manifest
        self.manifest["processes"] = int(self.description.get("processes", 1))  # those of the latest run
        self._elapsed_before = float(manifest.get("wall_time_s", 0.0))
        if manifest["complete"]:
            problems = verify_files(folder, manifest)
            if problems:
                raise DatafreeError(f"out={folder} holds this data set, complete, but it does not match its manifest "
                                    f"({'; '.join(problems[:3])}): restore the damaged files from a copy, or delete the "
                                    "folder and run the command again.")
            self._remove_leftovers(len(manifest["shards"]))
            return Start(len(manifest["shards"]), manifest["count"], manifest["class_counts"]["written"], None, complete=True)
        notices = []
        shards = manifest["shards"]
        damaged, problem = None, ""
        for k, entry in enumerate(shards):
            problems = verify_files(folder, manifest, [entry["file"]])
            if problems:
                damaged, problem = k, problems[0]
                break
        if damaged is not None:
            if damaged and not self._state_path(damaged).is_file():
                raise DatafreeError(f"out={folder}: {problem}, and the run state needed to write it again is gone: delete "
                                    "the folder and run the command again.")
            notices.append(f"{problem}: writing it and the {len(shards) - damaged - 1} shards after it again")
            self._truncate(damaged)
        self._remove_leftovers(len(manifest["shards"]))
        m = len(manifest["shards"])
        state = self._load_state(m, notices) if m else None
        return Start(m, manifest["count"], list(manifest["class_counts"]["written"]), state, notices=notices)

    def _truncate(self, shards: int) -> None:
        """Forget the shards from ``shards`` on (the manifest first, then the files)."""
        manifest = self.manifest
        dropped = manifest["shards"][shards:]
        manifest["shards"] = manifest["shards"][:shards]
        for entry in dropped:
            manifest["files"].pop(entry["file"], None)
            manifest["count"] -= int(entry["count"])
            counts = manifest["class_counts"]["written"]
            for k, c in enumerate(entry["class_counts"]):
                counts[k] -= int(c)
        self._write_manifest()
        self._remove_leftovers(shards)

    def _remove_leftovers(self, shards: int) -> None:
        """Shards and run states past the manifest's end, and temp files: what a killed run left half-done."""
        listed = set(self.manifest["files"])
        for path in self.folder.glob("shard_*.pt"):
            if path.name not in listed:
                path.unlink(missing_ok=True)
        for path in self.folder.glob(".*.tmp"):
            path.unlink(missing_ok=True)
        resume = self.folder / RESUME
        if self.manifest["complete"]:
            shutil.rmtree(resume, ignore_errors=True)
        elif resume.is_dir():
            for path in resume.iterdir():
                number = path.stem[len("after_"):]
                if path.suffix == ".tmp" or (path.name.startswith("after_") and number.isdigit() and int(number) > shards):
                    path.unlink(missing_ok=True)

    def _state_path(self, shards: int) -> Path:
        return self.folder / RESUME / f"after_{shards:05d}.pt"

    def _load_state(self, shards: int, notices: list[str]) -> dict | None:
        path = self._state_path(shards)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(state, dict) or state.get("format") != STATE_FORMAT or state.get("shards") != shards:
                raise ValueError("not the run state after this shard")
            return state
        except Exception as exc:  # noqa: BLE001 - a missing or damaged state only costs exactness
            reason = "it is missing" if isinstance(exc, FileNotFoundError) else f"it cannot be read ({type(exc).__name__})"
            notices.append(f"the run state after shard {shards} ({path.name}) is not usable ({reason}): continuing with "
                           "new random draws; the data set stays valid but differs from an uninterrupted run")
            return None

    # -- writing -------------------------------------------------------------------------------------
    def commit(self, samples: Samples, state: dict, drawn: int) -> None:
        """Add one complete shard (CPU samples, continuing the indices) and the run state after it."""
        manifest = self.manifest
        number = len(manifest["shards"])
        name = shard_name(number)
        start = manifest["count"]
        if len(samples) == 0 or int(samples.indices[0]) != start:
            raise RuntimeError(f"shard {number} must start at index {start}")
        class_counts = torch.bincount(samples.labels, minlength=len(manifest["classes"])).tolist()
        with self._disk_errors(f"shard {name}"):
            entry = write_shard(self.folder / name, samples)
            atomic_save({"format": STATE_FORMAT, "shards": number + 1, **state}, self._state_path(number + 1))
            manifest["shards"].append({"file": name, "start": start, "count": len(samples), "class_counts": class_counts})
            manifest["files"][name] = entry
            manifest["count"] = start + len(samples)
            manifest["class_counts"]["written"] = [a + b for a, b in zip(manifest["class_counts"]["written"], class_counts)]
            manifest["drawn"] = int(drawn)
            try:
                self._write_manifest()
            except BaseException:
                self._undo_last_shard()
                raise

    def _undo_last_shard(self) -> None:
        """The manifest could not be written: forget the shard in memory too (on disk it stays unlisted)."""
        manifest = self.manifest
        entry = manifest["shards"].pop()
        manifest["files"].pop(entry["file"], None)
        manifest["count"] -= int(entry["count"])
        manifest["class_counts"]["written"] = [a - b for a, b in zip(manifest["class_counts"]["written"], entry["class_counts"])]

    def finish(self) -> None:
        """All ``n`` samples are written: export the ImageFolder view if asked, mark the set complete, drop run states."""
        manifest = self.manifest
        if manifest["count"] != manifest["n"]:
            raise RuntimeError(f"finish() with {manifest['count']} of {manifest['n']} samples")
        fmt = self.description["format"]
        if fmt in ("imagefolder", "both"):
            shutil.rmtree(self.folder / IMAGEFOLDER_ROOT, ignore_errors=True)  # a half export of a killed run
            with self._disk_errors("the ImageFolder export"):
                files = write_image_folder(self.folder, self._shard_samples(), manifest["classes"], manifest["count"])
            # Hashed from the disk: what a reader checks is what was really written.
            manifest["files"].update({name: file_entry(self.folder / name) for name in files})
            manifest["imagefolder"] = {"root": IMAGEFOLDER_ROOT, "labels": f"{IMAGEFOLDER_ROOT}/labels.csv",
                                       "logits": f"{IMAGEFOLDER_ROOT}/logits.npy"}
        dropped = []
        if fmt == "imagefolder":
            dropped = [entry["file"] for entry in manifest["shards"]]
            manifest["shards"] = []
            for name in dropped:
                manifest["files"].pop(name)
        manifest["complete"] = True
        with self._disk_errors("the manifest"):
            self._write_manifest()
        for name in dropped:
            (self.folder / name).unlink(missing_ok=True)
        shutil.rmtree(self.folder / RESUME, ignore_errors=True)

    def _shard_samples(self) -> Iterator[Samples]:
        for entry in self.manifest["shards"]:
            yield read_shard(self.folder / entry["file"])

    def _write_manifest(self) -> None:
        self.manifest["updated"] = _now()
        self.manifest["wall_time_s"] = round(self._elapsed_before + time.perf_counter() - self._started, 3)
        write_manifest(self.folder, self.manifest)

    @contextlib.contextmanager
    def _disk_errors(self, what: str):
        """An OSError while writing becomes one message that says what is kept and how to continue."""
        try:
            yield
        except OSError as error:
            m = self.manifest
            kept = f"{len(m['shards'])} complete shards ({m['count']} of {m['n']} samples) are kept and valid"
            if error.errno in (errno.ENOSPC, errno.EDQUOT):
                raise DatafreeError(f"the disk holding {self.folder} is full (writing {what}): {kept}; free some space "
                                    "and run the same command to continue.") from None
            raise DatafreeError(f"cannot write {what} in {self.folder} ({error.strerror or error}): {kept}; fix the "
                                "folder and run the same command to continue.") from None
