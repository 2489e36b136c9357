"""Full-state checkpoints of a training loop: written atomically, read back with a fallback.

Every loop (teacher training, distillation, later synthesis) keeps its state in
one folder as three files, each a plain dict that ``torch.load(weights_only=True)``
reads:

* ``state_last.pt``: the newest state (every ``checkpoint_every`` steps, on
  SIGTERM/SIGINT and at the end of the run),
* ``state_prev.pt``: the one before it, so that a ``state_last.pt`` cut short
  (disk full, a kill in the middle of a copy to another machine) still leaves
  a state to resume from,
* ``state_best.pt``: the state at the best evaluation so far.

Under torchrun every rank keeps its own three files (its RNG states and replay pool
differ from the others'): rank 0 the names above, rank r ``state_last.rank<r>.pt`` and so on.

What a state holds is up to the loop; this module adds the RNG states, the
resolved configuration, and the rules for comparing it on resume.
"""
from __future__ import annotations

import os
import random
import sys
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from datafree.errors import DatafreeError
from datafree.utils import dist
from datafree.utils.checkpoint import atomic_save

FORMAT = "datafree-state-1"
LAST, PREV, BEST = "state_last.pt", "state_prev.pt", "state_best.pt"

# Keys that may differ between a run and its resume: how long it runs and how it logs.
# Everything else must match, or the resumed run would not be the run that was started.
RESUMABLE_CHANGES = (
    "resume", "progress", "dist_timeout_s", "cpu_threads",
    "trainer.rounds", "trainer.time_budget_s", "trainer.log_every", "trainer.eval_every", "trainer.checkpoint_every",
    "teacher.train.epochs", "teacher.train.time_budget_s", "teacher.train.checkpoint_every",
)


# -- random number generators --------------------------------------------------------------------
def rng_state() -> dict:
    """torch (CPU and every CUDA device), numpy and random, as tensors and plain containers."""
    version, key, gauss = random.getstate()
    kind, np_key, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"kind": str(kind), "key": torch.from_numpy(np_key.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "random": {"version": int(version), "key": list(key), "gauss": gauss},
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"][: torch.cuda.device_count()])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    r = state["random"]
    random.setstate((r["version"], tuple(r["key"]), r["gauss"]))


def to_cpu(obj):
    """A copy of nested containers with every tensor detached on the CPU (what a state file holds)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return obj


# -- configuration ---------------------------------------------------------------------------------
def flatten(config: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


# data.image_size and data.num_classes left to auto (jobs.py): a run's state records the values they took.
AUTO_DATA_KEYS = ("image_size", "num_classes")
# Batch sizes left to auto (jobs.device_batches): the state records the ones the device gave.
AUTO_BATCH_KEYS = ("trainer.batch_size", "synthesizer.batch_size")


def config_differences(saved: dict, current: dict, allowed: Iterable[str] = RESUMABLE_CHANGES) -> list[str]:
    """``key: saved -> current`` for every leaf that differs, except run length and logging keys, and keys the
    saved recipe did not have: those were added by a later datafree (a recipe takes no unknown key), with the
    earlier behaviour as their default."""
    allowed = tuple(allowed)
    old, new = flatten(saved or {}), flatten(current or {})
    diffs = []
    for key in sorted(set(old) | set(new)):
        if key in allowed or any(key.startswith(a + ".") for a in allowed) or (key not in old and old):
            continue
        if new.get(key) == "auto" and (key in AUTO_BATCH_KEYS or (key.startswith("data.")
                                                                  and key.rsplit(".", 1)[-1] in AUTO_DATA_KEYS)):
            continue  # the composed recipe's auto against what the run made of it: the job resolves it again
            # from the same data, teacher and device, and compares the outcome with the saved state's (StateFiles.load)
        if old.get(key, "<absent>") != new.get(key, "<absent>"):
            diffs.append(f"{key}: {old.get(key, '<absent>')!r} -> {new.get(key, '<absent>')!r}")
    return diffs


# -- the files ---------------------------------------------------------------------------------------
class StateFiles:
    """The state files of one loop in ``directory``; only an ``enabled`` instance writes.

    ``config`` (the resolved recipe as plain containers) goes into every state and is
    what a resume is compared with. ``resume`` says whether :meth:`load` should look
    for a state at all; ``notice`` receives the one-line messages about fallbacks.
    ``rank`` (default: this process's) names the files: each rank of a torchrun launch keeps its own.
    """

    def __init__(self, directory: str | os.PathLike, *, config: dict | None = None, resume: bool = False,
                 enabled: bool = True, notice=None, rank: int | None = None, kind: str | None = None):
        self.directory = Path(directory)
        self.kind = kind  # the command resuming here (distill, train-teacher): a state of another is refused by name
        self.config = config or {}
        self.resume = bool(resume)
        self.enabled = bool(enabled)
        self.notice = notice or (lambda message: print(message, file=sys.stderr))
        self.rank = dist.rank() if rank is None else int(rank)
        self.last_saved: Path | None = None  # the newest state this process wrote or read

    def name_for(self, rank: int, base: str = LAST) -> str:
        """The file name of state ``base`` (``state_last.pt``, ...) of ``rank``."""
        return base if rank == 0 else base.replace(".pt", f".rank{rank}.pt")

    def _path(self, base: str) -> Path:
        return self.directory / self.name_for(self.rank, base)

    @property
    def last_path(self) -> Path:
        return self._path(LAST)

    def save(self, state: dict, best: bool = False) -> Path | None:
        """Write ``state`` as the new last state (the old one becomes prev), or with ``best`` as the best state.

        A best state is not also written as last: one write per evaluation is enough, and the
        last state moves on with the periodic checkpoints anyway.
        """
        if not self.enabled:
            return None
        blob = {"format": FORMAT, "config": self.config, **to_cpu(state)}
        if best:
            return atomic_save(blob, self._path(BEST))
        last = self._path(LAST)
        if last.exists():
            # A rename is atomic: at every moment at least one complete state is on disk.
            os.replace(last, self._path(PREV))
        atomic_save(blob, last)
        self.last_saved = last
        return last

    def load(self, saves: int | None = None) -> dict | None:
        """The newest readable state (last, else prev), or None when this folder holds none to resume from.

        A file that cannot be read (truncated, corrupt, foreign) is skipped and named in one notice; when every
        state file is unreadable the resume is refused, since starting afresh would overwrite the run.
        ``saves``: the newest readable one of that save number (the one every rank of a run has).
        """
        if not self.resume:
            return None
        damaged = []
        for name in (LAST, PREV):
            path = self._path(name)
            if not path.is_file():
                continue
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
            except Exception:  # noqa: BLE001 - the reader's reason is about its internals; the user needs "damaged"
                state = None
            if not isinstance(state, dict) or state.get("format") != FORMAT:
                damaged.append(path.name)
                continue
            if saves is not None and int(state.get("saves", 0)) != saves:
                continue
            if self.kind and state.get("kind") not in (None, self.kind):
                raise DatafreeError(
                    f"cannot resume from {path}: it holds a {state['kind']} run, not a {self.kind} run: continue it "
                    f"with datafree {state['kind']} resume={self.directory}."
                )
            diffs = config_differences(state.get("config", {}), self.config)
            if diffs:
                raise DatafreeError(
                    f"cannot resume from {path}: the configuration differs from the checkpoint's in "
                    f"{'; '.join(diffs)}. Give the same settings as the interrupted run (only run length and "
                    f"logging may change), or start a new run without resume."
                )
            if damaged:
                self.notice(f"datafree: notice: {' and '.join(damaged)} in {self.directory} cannot be read (damaged): "
                            f"resuming from {path.name}")
            self.last_saved = path
            return state
        if damaged:
            raise DatafreeError(
                f"cannot resume from {self.directory}: {' and '.join(damaged)} cannot be read (damaged), so nothing was "
                "changed: put back a good copy, or start a new run in another folder (hydra.run.dir) without resume."
            )
        return None

    def exists(self) -> bool:
        return any(self._path(name).is_file() for name in (LAST, PREV))


def check_resume(resume, out_dir: str | os.PathLike, config: dict, command: str | None = None) -> None:
    """Every reason to refuse a run in ``out_dir``, checked before anything is written there.

    A new run in a folder that holds a state, a resume without one, a state that cannot be read, one of another
    ``command`` than this one (a train-teacher run resumed by distill), or one saved with other settings than
    ``config`` (the resolved recipe) is refused.
    """
    if not resume_requested(resume, out_dir, resumable="resume" in config):
        return
    folders = sorted({path.parent for path in Path(out_dir).glob("**/state_*.pt")})
    for folder in folders:  # the run's own, and those of the loops inside it (teacher/, noise_baseline/)
        kind = command if folder.resolve() == Path(out_dir).resolve() else None
        StateFiles(folder, config=config, resume=True, notice=lambda message: None, kind=kind).load()


def resume_requested(resume, out_dir: str | os.PathLike, resumable: bool = True) -> bool:
    """Whether this run continues a saved one in ``out_dir``; refuses what cannot be meant.

    ``resume`` is the recipe's value: null/false (a new run), true (continue the run in
    this run directory) or a run directory (the CLI makes it the run directory). ``resumable``: the command has a
    ``resume`` key (distill, train-teacher); deploy, report and the others are told to write elsewhere, not to resume.
    """
    out_dir = Path(out_dir)
    shown = "true" if resume is True else resume
    # the run's own state first (state_last.pt), then those of the loops inside it (noise_baseline/, teacher/)
    found = sorted((str(p.relative_to(out_dir)) for p in out_dir.glob("**/state_*.pt")),
                   key=lambda name: (name.count("/"), not name.endswith("state_last.pt"), name)) if out_dir.is_dir() else []
    if not resume:
        if found and not resumable:
            raise DatafreeError(f"{out_dir} holds a run ({found[0]}): choose another hydra.run.dir for this command's "
                                "output, which would be written among the run's files.")
        if found:
            raise DatafreeError(
                f"{out_dir} already holds the saved state of a run ({found[0]}): add resume=true to continue it, "
                "or choose another hydra.run.dir for a new run."
            )
        return False
    if isinstance(resume, str) and Path(resume).resolve() != out_dir.resolve():
        raise DatafreeError(
            f"resume={shown} but the run directory is {out_dir}: give only resume=RUN_DIR (it sets the run directory), "
            "or resume=true with hydra.run.dir=RUN_DIR."
        )
    if not out_dir.is_dir():
        raise DatafreeError(
            f"resume={shown} but {out_dir} does not exist: point resume at the run directory of the interrupted run "
            "(it holds state_last.pt), or leave resume out to start a new run."
        )
    if not found:
        raise DatafreeError(
            f"resume={shown} but {out_dir} holds no saved state (state_last.pt): point resume at the run directory "
            "of the interrupted run (it holds state_last.pt), or leave resume out to start a new run."
        )
    return True
