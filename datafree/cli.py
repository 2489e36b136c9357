"""``datafree <command> [hydra overrides]``: the command picks the recipe, hydra the rest.

Commands that need no recipe (``inspect``) take their own flags (PLAIN_COMMANDS).

Bad input ends with one line on stderr, exit status 2, and no half-written
run directory. Hydra's own errors (unknown keys and recipe names, bad override
syntax) and an output folder that cannot be written are caught by composing
the recipe once before hydra runs, and reported the same way, with hydra's
list of valid choices kept. A run stopped by SIGTERM/SIGINT saves its state and
exits with 128 + the signal number.

Under torchrun (``torchrun --nproc_per_node=N -m datafree distill ...``) every process runs
the same command: they join one process group first, rank 0 checks the run directory and
hands its exact name (``${now:...}`` resolved once) to the others, and only rank 0 prints,
logs and keeps hydra's record; the other ranks print only errors of their own.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import tempfile
import sys
from pathlib import Path
from typing import Callable

from datafree.recipe_nodes import recipes_location
from datafree.utils.run_record import RUN_RECIPE_GROUPS, override_key, started_with

# What each command does is datafree.help's (its first line here, the whole with --help).
COMMANDS: dict[str, tuple[str, str]] = {
    # command: (recipe, job function in datafree.jobs)
    "train-teacher": ("train_teacher", "train_teacher_job"),
    "distill": ("distill", "distill_job"),
    "synthesize": ("synthesize", "synthesize_job"),
    "audit": ("audit", "audit_job"),
    "deploy": ("deploy", "deploy_job"),
    "report": ("report", "report_job"),
}
# Commands without a recipe, with their own flags: (module, function given the arguments).
PLAIN_COMMANDS: dict[str, tuple[str, str]] = {
    "inspect": ("datafree.export.inspect", "main"),
}

USAGE = """usage: datafree <command> [key=value ...]   (inspect: datafree inspect PATH [--out DIR])
       datafree --version

commands:
{commands}

With no overrides, 'datafree distill' runs the embedded CPU demo: it trains a small
teacher on a generated shapes data set, then distils it data-free into a smaller
student and compares it with a student distilled on random noise.
Examples:
  datafree distill
  datafree train-teacher experiment=cifar10_resnet34_resnet18 data.download=true
  datafree distill experiment=cifar10_resnet34_resnet18 teacher.checkpoint=PATH
  datafree distill teacher=module teacher.model._target_=my_pkg.MyNet teacher.checkpoint=PATH
  datafree train-teacher teacher=torchvision teacher.name=resnet50 data=imagefolder data.root=DIR   (your images)
  datafree distill experiment=fast teacher.checkpoint=PATH student=timm student.name=efficientnet_b0
      (any teacher, any student; data=imagefolder data.root=DIR: your test images, read at the teacher's size)
  datafree synthesize teacher.checkpoint=PATH n=10000 out=DIR   (then: datafree inspect DIR)
  datafree distill data=synthetic data.path=DIR   (a student from a synthetic data set, no teacher)
  datafree audit synthetic=DIR data=cifar10_jpeg teacher.checkpoint=PATH   (did training images leak?)
  datafree report run=RUN_DIR   |   datafree deploy run=RUN_DIR int8=true   (ship the student)
  (teacher sources: datafree checkpoints, module, torchvision, timm, torchscript, ensemble; students: the zoo,
   torchvision, timm, module; see docs/custom_teacher.md and docs/any_network.md)
datafree <command> --help: what it does, its main keys and examples; --cfg job: every key.
Hydra's own flags work too: --cfg job, --hydra-help, -m (multirun)."""


def usage() -> str:
    from datafree.help import HELP

    firsts = {name: HELP[name].purpose.splitlines()[0].rstrip(".") for name in [*COMMANDS, *PLAIN_COMMANDS]}
    lines = "\n".join(f"  {name:<14} {first}" for name, first in firsts.items())
    return USAGE.format(commands=lines)


def _plain(command: str, arguments: list[str]) -> int:
    """A command with its own flags (argparse): bad input is one line and exit status 2, as for the others."""
    import importlib

    from datafree.errors import DatafreeError

    module, function = PLAIN_COMMANDS[command]
    try:
        return int(getattr(importlib.import_module(module), function)(arguments) or 0)
    except DatafreeError as error:
        print(f"datafree: error: {error}", file=sys.stderr)
        return 2


def _guarded(job: Callable, cfg, signals) -> dict | None:
    from hydra.core.hydra_config import HydraConfig

    from datafree.errors import DatafreeError
    from datafree.utils import dist
    from datafree.utils.signals import Interrupted, Signalled, stopped_outside_loops

    out_dir = Path(HydraConfig.get().runtime.output_dir)
    record = out_dir / HydraConfig.get().output_subdir if HydraConfig.get().output_subdir else None
    before = _snapshot(out_dir, record)
    who = f"[rank {dist.rank()}] " if dist.rank() else ""
    started = complete = outside = False
    try:
        signals.start()
        started = True
        result = job(cfg, out_dir)
        complete = True
        return result
    except Signalled as stop:  # outside the loops, which save their state and raise Interrupted themselves
        cause, outside = stopped_outside_loops(stop.signum, started, any(out_dir.glob("**/state_*.pt"))), True
    except Exception as error:  # noqa: BLE001 - only DatafreeError is handled, the rest re-raised
        cause = _datafree_cause(error, DatafreeError)
        if cause is None:
            if dist.active() and dist.lost_contact(error):
                first = next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
                print(f"datafree: error: {who}lost contact with the other processes ({first[:200]}): another rank "
                      "stopped or failed (its own message says why), or the network between them broke; the full "
                      "states saved so far are kept: run the same command with resume=RUN_DIR to continue.", file=sys.stderr)
                sys.exit(1)
            raise
    finally:
        signals.finish(complete)
    code = getattr(cause, "exit_code", 2)  # Interrupted: 128 + signal, after saving the state
    if dist.is_main_process():
        if code == 2 or outside:
            _undo_if_nothing_done(out_dir, record, before)
        _remove_if_only_hydra_files(out_dir, f"{HydraConfig.get().job.name}.log")
        _remove_new_parents(out_dir)
    # A refusal every rank reaches (a setting, the teacher, the data) is printed once, by rank 0.
    repeated = code == 2 and dist.said_by_rank_zero(str(cause))
    if dist.is_main_process() or not (repeated or isinstance(cause, (Interrupted, dist.ReportedByRankZero))):
        print(f"datafree: {'error' if code == 2 else 'interrupted'}: {who}{cause}", file=sys.stderr)
    if isinstance(cause, Interrupted) and dist.active():
        # Every rank stopped here: none exits (and has torchrun end the others) before rank 0 has reported.
        dist.barrier()
    sys.exit(code)


def _datafree_cause(error: BaseException, kind: type) -> BaseException | None:
    """The DatafreeError behind ``error``: hydra's instantiate wraps what constructors raise."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, kind):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def _snapshot(out_dir: Path, record: Path | None) -> dict[Path, tuple[int, int]]:
    """(size, mtime) of every file in an existing run folder, except this invocation's own hydra record."""
    if not out_dir.is_dir():
        return {}
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in out_dir.rglob("*")
            if p.is_file() and not (record is not None and record in p.parents)}


def _undo_if_nothing_done(out_dir: Path, record: Path | None, before: dict[Path, tuple[int, int]]) -> None:
    """A refused run in an existing folder (a resume) leaves it as it was: no new record, no log lines.

    When the run wrote no output (the logs aside) before it stopped, its hydra record
    (``.hydra/resumed_<time>``) is removed and the logs are cut back to their earlier length.
    """
    if not before:
        return  # a new folder: _remove_if_only_hydra_files decides
    after = _snapshot(out_dir, record)
    changed = [p for p, stamp in after.items() if before.get(p) != stamp and p.suffix != ".log"]
    if changed:
        return  # real work happened: its record stays with it
    for path, (size, _) in before.items():
        if path.suffix == ".log" and path.is_file() and path.stat().st_size > size:
            with path.open("r+b") as handle:
                handle.truncate(size)
    for path in after:
        if path not in before and path.suffix == ".log":
            path.unlink(missing_ok=True)
    if record is not None and record != out_dir and record.is_dir() and (
            record.name != ".hydra" or not _EXISTED.get("record", True)):  # a resume's record, or one new in the folder
        shutil.rmtree(record, ignore_errors=True)


def _remove_if_only_hydra_files(out_dir: Path, job_log: str) -> None:
    """Drop a run directory that holds nothing but hydra's own bookkeeping: its ``.hydra`` record and the job's log.

    Anything else keeps the folder: outputs (e.g. the last good checkpoint), and files that were
    there before the run, even a user's own ``.log`` file.
    """
    if not out_dir.is_dir():
        return
    if any(p.name not in (".hydra", job_log) for p in out_dir.iterdir()):
        return
    if _EXISTED.get("folder") and not _EXISTED.get("record", True):  # the user's own (empty) folder stays
        shutil.rmtree(out_dir / ".hydra", ignore_errors=True)
        (out_dir / job_log).unlink(missing_ok=True)
        _close_log_handlers(out_dir)
        return
    shutil.rmtree(out_dir, ignore_errors=True)
    _close_log_handlers(out_dir)


def _close_log_handlers(out_dir: Path) -> None:
    """The job's log handler goes with its file: a later line in this process (hydra's next run, a caller's own
    logging) would fail to make the file again."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, logging.FileHandler)]:
        if out_dir.absolute() in Path(handler.baseFilename).parents:
            root.removeHandler(handler)
            handler.close()


# The folders above the run directory that did not exist before this command (e.g. outputs/distill/ on a
# first run): a refused run removes them again when they are empty, so that it leaves nothing behind. And whether the
# run directory and its .hydra record were there before (a folder the user made, perhaps holding files of their own):
# a refused run takes away only what it added, the record hydra wrote into such a folder, not the folder.
_NEW_PARENTS: list[Path] = []
_EXISTED: dict[str, bool] = {}


def _note_what_exists(run_dir: str) -> None:
    path = Path(run_dir).expanduser().absolute()
    _NEW_PARENTS[:] = [parent for parent in path.parents if not parent.exists()]
    _EXISTED.update(folder=path.is_dir(), record=(path / ".hydra").exists())


def _remove_new_parents(out_dir: Path) -> None:
    """Remove the empty folders above a removed run directory that this command created (deepest first)."""
    if out_dir.exists():
        return
    for folder in _NEW_PARENTS:
        if folder not in out_dir.absolute().parents:
            continue  # named before hydra resolved the run directory: not this run's parent
        try:
            folder.rmdir()
        except OSError:  # not empty (or not ours to remove): stop at the first such folder
            break


def _with_resume(overrides: list[str], recipe: str) -> list[str]:
    """``resume=RUN_DIR`` runs in RUN_DIR; a resumed run keeps the first run's .hydra record and adds its own.
    The settings the run was started with (its ``.hydra/overrides.yaml``) come first, each unless the command gives
    its key again: ``resume=RUN_DIR`` alone continues the run as it was started, and the command's own settings
    (a longer ``trainer.time_budget_s``) apply over them; any other change is refused as before (run_state)."""
    values = {o.split("=", 1)[0]: o.split("=", 1)[1] for o in overrides if "=" in o}
    resume = values.get("resume", "")
    if resume.lower() in ("", "null", "none", "false"):
        return overrides
    extra = []
    if resume.lower() != "true" and "hydra.run.dir" not in values:
        extra.append(f"hydra.run.dir={resume}")
    if "hydra.output_subdir" not in values:
        extra.append("hydra.output_subdir=.hydra/resumed_${now:%Y-%m-%d_%H-%M-%S}")
    run_dir = resume if resume.lower() != "true" else values.get("hydra.run.dir")
    given = {override_key(o) for o in overrides}
    recorded = [o for o in started_with(run_dir, recipe) if override_key(o) not in given]
    return [*recorded, *overrides, *extra]


# What a distill run's settings say that ``synthesize from_run=RUN`` needs: its teacher, student, synthesizer and data.
def _with_run_recipe(overrides: list[str], recipe: str) -> list[str]:
    """``synthesize from_run=RUN`` builds the run's own teacher, student and synthesizer: the settings of those (and
    of its data) the run was started with come first, each unless the command gives its key again, their relative
    paths read from the folder the run was started in; the line printed says which."""
    if recipe != "synthesize":
        return overrides
    run = next((o.split("=", 1)[1] for o in reversed(overrides) if override_key(o) == "from_run" and "=" in o), "")
    if run.lower() in ("", "null", "none"):
        return overrides
    from datafree.utils.run_record import anchored_path, started_in

    given = {override_key(o) for o in overrides}
    base = started_in(run)
    taken = []
    for override in started_with(run, "distill"):
        key = override_key(override)
        if key.split(".")[0] not in RUN_RECIPE_GROUPS or key in given or "=" not in override:
            continue
        name, value = override.split("=", 1)
        taken.append(f"{name}={anchored_path(key, value, base)}")
    left_out = []
    while taken:  # a setting of distill's own data (data.test.n) that synthesize's recipe lacks is left out
        cfg = _compose(recipe, [*taken, *overrides])
        lacking = re.match(r"(\S+) is not a key of", cfg) if isinstance(cfg, str) else None
        if lacking is None or lacking.group(1) not in {override_key(o) for o in taken}:
            break
        left_out += [o for o in taken if override_key(o) == lacking.group(1)]
        taken = [o for o in taken if override_key(o) != lacking.group(1)]
    if taken and int(os.environ.get("RANK", 0)) == 0:
        skipped = f" (not {' '.join(left_out)}: not a key of synthesize's recipe)" if left_out else ""
        print(f"from_run={run}: with the run's own settings {' '.join(taken)}{skipped}")
    return [*taken, *overrides]


def _resume_at_a_file(overrides: list[str]) -> str | None:
    """``resume=`` names the run's folder; a file in it (its state_last.pt) would be taken for the run directory."""
    resume = next((o.split("=", 1)[1] for o in reversed(overrides) if override_key(o) == "resume" and "=" in o), "")
    path = Path(resume).expanduser()
    if path.is_file():
        return f"resume={resume} names a file: give the run's folder, resume={path.parent}."
    return None


def _one_line(error: BaseException) -> str:
    """Hydra's multi-line message as one line; the list of valid choices kept, the search path dropped."""
    kept = []
    override = getattr(error, "override", None)
    if override:
        kept.append(f"cannot parse the override {override!r}:")
        quote = _quoting_hint(override)
    message = str(error)
    if error.__cause__ is not None and str(error.__cause__) not in message:
        message += "\n" + str(error.__cause__)  # e.g. "Key 'x' is not in struct" behind "Could not override"
    for line in message.splitlines():
        text = line.strip()
        if text.startswith(("Config search path", "provider=", "full_key:", "object_type=", "reference_type=")):
            continue
        if text:
            kept.append(text)
    text = " ".join(kept)
    # The lexer's name and a copy of the override with a caret: its internals, and no help to the user.
    text = re.sub(r"LexerNoViableAltException: .* \^", "a character in it is hydra syntax.", text)
    text = re.sub(r"(Available options in '[^']+':) (.*)$", lambda m: f"{m.group(1)} {', '.join(m.group(2).split())}.", text)
    if "is not in struct" in text:
        text += ". Check the spelling: 'datafree <command> --cfg job' prints every key."
    if override and quote:
        text += f"{'' if text.endswith('.') else '.'} {quote}"
    return text


def _quoting_hint(override: str) -> str | None:
    """How to quote a value hydra cannot read as it is: spaces, non-ASCII characters, or ~ # = ( ) in it."""
    key, sep, value = override.partition("=")
    if not sep or not re.search(r"\s|[^\x00-\x7f]|[~#=()]", value) or value[:1] in "'\"":
        return None
    quoted = f"{key}='{value}'" if "'" not in value else f'{key}="{value}"'
    shell = f'"{quoted}"' if "'" in quoted else f"'{quoted}'"
    return (f"Values with spaces, non-ASCII characters or ~ # = ( ) must be quoted for hydra: write {quoted} "
            f"(in a shell: {shell}).")


def _unwritable(run_dir: str) -> str | None:
    """Why ``run_dir`` cannot be created and written, or None when it can.

    Permission bits say nothing for root or on read-only mounts, so the folder is
    really created and a file written in it; whatever this created is removed again.
    """
    path = Path(run_dir).expanduser().absolute()
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return (f"the run directory {path} cannot be created: {existing} is a file, not a folder. "
                "Set hydra.run.dir to a writable folder.")
    if not os.access(existing, os.W_OK | os.X_OK):
        return (f"the run directory {path} cannot be written ({existing} is read-only for this user): "
                "set hydra.run.dir to a writable folder, or run from a writable working directory.")
    created = [parent for parent in [path, *path.parents] if not parent.exists()]
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        return (f"the run directory {path} cannot be written ({error.strerror or type(error).__name__}): "
                "set hydra.run.dir to a writable folder, or run from a writable working directory.")
    finally:
        for folder in created:  # deepest first; only the folders this check made, and only while empty
            try:
                folder.rmdir()
            except OSError:
                break
    return None


def recipes_context():
    """hydra's ``initialize`` context for the recipes where :func:`recipes_location` finds them; inside it,
    ``hydra.compose("distill", overrides=[...])`` composes as the CLI does (scripts, notebooks)."""
    from hydra import initialize_config_dir, initialize_config_module

    location = recipes_location()
    if location.startswith("pkg://"):
        return initialize_config_module(config_module=location[len("pkg://"):], version_base="1.3")
    return initialize_config_dir(config_dir=location, version_base="1.3")


def _compose(recipe: str, overrides: list[str]):
    """The recipe composed as hydra will (with hydra's own node), or the error line."""
    from hydra import compose
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        with recipes_context():
            return compose(config_name=recipe, overrides=overrides, return_hydra_config=True)
    except (HydraException, OmegaConfBaseException) as error:
        unknown = re.match(r"Could not override '([^']+)'", str(error))
        if unknown:  # a key the recipe lacks: said with the key it was probably meant to be
            others = [o for o in overrides if override_key(o) != unknown.group(1)]
            known = _compose(recipe, others) if others != overrides else None
            if known is not None and not isinstance(known, str):
                return _not_a_key(recipe, known, unknown.group(1))
        return _one_line(error)


def _command_of(recipe: str) -> str:
    """The command that runs ``recipe`` (``train_teacher`` -> ``train-teacher``)."""
    return next(name for name, (recipe_of, _) in COMMANDS.items() if recipe_of == recipe)


def _not_a_key(recipe: str, cfg, key: str, added: bool = False) -> str:
    """The line for ``key``, which the recipe lacks (``added``: given with ``+``, where nothing would take it); ``cfg``
    is the recipe without it, to find the key it was probably meant to be."""
    command = _command_of(recipe)
    meant = _closest_key(cfg, key)
    text = f"{key} is not a key of the {command} recipe" + (f": did you mean {meant}?" if meant else ".")
    if added:
        text += (" '+' adds a key only where a constructor takes it (inside a node with _target_, e.g. "
                 "+student.model.num_labels=10), and nothing takes this one.")
    return f"{text} 'datafree {command} --cfg job' prints every key."


def _node(cfg, key: str):
    """The recipe node at dotted ``key`` (the whole recipe for ''), or None when there is none or it is a value."""
    from omegaconf import DictConfig, OmegaConf

    node = cfg if not key else OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
    return node if isinstance(node, DictConfig) else None


def _closest_key(cfg, key: str) -> str | None:
    """The existing key ``key`` was most likely meant to be: its first part the recipe lacks, matched by spelling
    among the keys beside it (``trainer.roundz`` -> ``trainer.rounds``, ``studnt.name`` -> ``student.name``)."""
    import difflib

    parts = key.split(".")
    for depth, part in enumerate(parts):
        node = _node(cfg, ".".join(parts[:depth]))
        if node is None:
            return None
        names = [str(name) for name in node.keys() if name != "hydra"]
        if part in names:
            continue
        match = difflib.get_close_matches(part, names, n=1, cutoff=0.6)
        return ".".join([*parts[:depth], match[0], *parts[depth + 1:]]) if match else None
    return None


def _unread_added_key(recipe: str, cfg, overrides: list[str]) -> str | None:
    """``+key=value`` adds a key the recipe lacks. A constructor takes it inside a node with ``_target_``
    (``+student.model.num_labels=10``), as does a value that is such a node (``+teacher.model={_target_: ...}``);
    anywhere else nothing does, and a misspelt key (``+teacher.train.epochz=3``) would be ignored. (The trainer's node
    has a ``_target_`` that takes only its own options: config_checks refuses others before any work.)"""
    choices = cfg.hydra.runtime.choices
    for override in overrides:
        if not override.startswith("+") or override.startswith("++") or "=" not in override:
            continue
        key = override_key(override)
        if key.startswith("hydra.") or "/" in key or key in choices:  # hydra's own, or a config group added
            continue
        parts = key.split(".")
        value = _node(cfg, key)
        if value is not None and "_target_" in value:
            continue
        if any("_target_" in (_node(cfg, ".".join(parts[:depth])) or {}) for depth in range(1, len(parts))):
            continue  # the constructor refuses what it does not take (the trainer's options: config_checks)
        without = _compose(recipe, [o for o in overrides if o != override])
        return _not_a_key(recipe, cfg if isinstance(without, str) else without, key, added=True)
    return None


def _run_dir(cfg) -> str | None:
    from omegaconf.errors import OmegaConfBaseException

    try:
        return str(cfg.hydra.run.dir)
    except OmegaConfBaseException:  # an interpolation only hydra's run can resolve
        return None


def _unnamed_student(recipe: str, cfg) -> str | None:
    """experiment=fast is the recipe for any pair, so its student is the user's to name: the recipes' default is the
    demo's microcnn (5k parameters), which would otherwise be distilled from a ResNet-50 without a word."""
    if recipe != "distill" or cfg.hydra.runtime.choices.get("experiment") != "fast":
        return None
    if any(override.lstrip("+~").split("=", 1)[0] == "student" for override in cfg.hydra.overrides.task):
        return None
    return ("experiment=fast distils into the student you name: add student=resnet18 (the zoo), student=torchvision "
            "student.name=mobilenet_v3_large, student=timm student.name=efficientnet_b0 or student=module "
            "student.model._target_=pkg.SmallNet.")


def _preflight(recipe: str, overrides: list[str]) -> str | None:
    """Compose the recipe as hydra will and check the run directory: the error line, or None."""
    cfg = _resume_at_a_file(overrides) or _compose(recipe, overrides)
    if isinstance(cfg, str):
        return cfg
    unnamed = _unnamed_student(recipe, cfg) or _unread_added_key(recipe, cfg, overrides)
    if unnamed:
        return unnamed
    run_dir = _run_dir(cfg)
    if run_dir is None:  # hydra reports its own interpolation
        return None
    _note_what_exists(run_dir)
    return _unwritable(run_dir) or _refused_resume(cfg, run_dir, recipe)


def _refused_resume(cfg, run_dir: str, recipe: str) -> str | None:
    """A run that would be refused in its folder is refused before hydra writes its record there."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from datafree.errors import DatafreeError
    from datafree.utils.run_state import check_resume

    try:
        job_cfg = OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"])
        config = OmegaConf.to_container(job_cfg, resolve=True)
    except OmegaConfBaseException:
        return None  # the job's own checks name what cannot be resolved
    try:
        # A state records the loop that saved it, and the loops are named after their commands.
        check_resume(config.get("resume"), Path(run_dir), config, _command_of(recipe))
    except DatafreeError as error:
        return str(error)
    return None


def _join_ranks(recipe: str, overrides: list[str]) -> tuple[str | None, list[str]]:
    """Under torchrun: compose, join the process group, agree on one run directory; (error line, overrides).

    Every rank composes (the same arguments fail alike everywhere); rank 0 checks the run
    directory and hands its resolved name to the others, so that a ``${now:...}`` in it names
    one folder. The other ranks keep no hydra record and no log file of their own.
    """
    from datafree.errors import DatafreeError
    from datafree.utils import dist
    from datafree.utils.device import resolve_device

    cfg = _resume_at_a_file(overrides) or _compose(recipe, overrides)
    if isinstance(cfg, str):
        return cfg, overrides
    unnamed = _unnamed_student(recipe, cfg) or _unread_added_key(recipe, cfg, overrides)
    if unnamed:
        return unnamed, overrides
    try:
        dist.init(resolve_device(cfg.get("device", "auto")), cfg.get("dist_timeout_s", 600))
    except DatafreeError as error:
        return str(error), overrides
    problem, run_dir = None, None
    if dist.is_main_process():
        run_dir = _run_dir(cfg)
        if run_dir is not None:
            _note_what_exists(run_dir)
        problem = ((_unwritable(run_dir) or _refused_resume(cfg, run_dir, recipe)) if run_dir is not None else
                   "the run directory cannot be named before hydra starts: set hydra.run.dir=DIR")
    problem, run_dir = dist.broadcast_object((problem, run_dir))
    if problem:
        return problem, overrides
    quoted = run_dir.replace("\\", "\\\\").replace("'", "\\'")
    kept = [o for o in overrides if not o.startswith("hydra.run.dir=")]
    if dist.is_main_process():
        return None, [*kept, f"hydra.run.dir='{quoted}'"]
    kept = [o for o in kept if not o.startswith("hydra.output_subdir=")]
    return None, [*kept, f"hydra.run.dir='{quoted}'", *RANK_OVERRIDES]


# Ranks other than 0 keep no hydra record (.hydra/) and write no log file: rank 0's are the run's.
RANK_OVERRIDES = ("hydra.output_subdir=null", "hydra/job_logging=disabled", "hydra/hydra_logging=disabled")


def main(argv: list[str] | None = None) -> int:
    try:
        code = _main(argv)
        sys.stdout.flush()  # here, not at the interpreter's exit, where a closed pipe is a traceback
        return code
    except BrokenPipeError:  # the reader of the output left (datafree inspect SET | head): stop as a pipe's writer does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + getattr(signal, "SIGPIPE", 13)


def _main(argv: list[str] | None) -> int:
    entry = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if argv[0] in ("--version", "-V"):
        from datafree.version import __version__

        print(f"datafree {__version__}")
        return 0
    command, overrides = argv[0], argv[1:]
    if command in (*COMMANDS, *PLAIN_COMMANDS) and {"-h", "--help"} & set(overrides):
        from datafree.help import command_help

        print(command_help(command))
        return 0
    distributed = int(os.environ.get("WORLD_SIZE", 1)) > 1
    if command in (*PLAIN_COMMANDS, "audit", "deploy", "report") and distributed:
        if int(os.environ.get("RANK", 0)) == 0:
            print(f"datafree: error: datafree {command} runs in one process: run it without torchrun.", file=sys.stderr)
        return 2
    if command in PLAIN_COMMANDS:
        return _plain(command, overrides)
    if command not in COMMANDS:
        import difflib

        known = [*COMMANDS, *PLAIN_COMMANDS]
        meant = difflib.get_close_matches(command.replace("_", "-"), known, n=1, cutoff=0.6)
        guess = f"did you mean {meant[0]}? " if meant else ""
        print(f"datafree: error: unknown command {command!r}: {guess}choose one of {', '.join(known)}.\n\n{usage()}",
              file=sys.stderr)
        return 2
    from datafree.utils.signals import CommandSignals, stopped_outside_loops

    # The console script keeps the last handler through the interpreter's shutdown; a caller's own process is left as it was.
    with CommandSignals(defer=distributed, keep=entry, report=int(os.environ.get("RANK", 0)) == 0) as signals:
        code = _run(command, overrides, distributed, signals)
    if code == 0 and signals.phase == "before" and signals.received is not None:  # hydra's flags: no job ran
        stop = stopped_outside_loops(signals.received, started=False, saved=False)
        print(f"datafree: interrupted: {stop}", file=sys.stderr)
        return stop.exit_code
    return code


def _run(command: str, overrides: list[str], distributed: bool, signals) -> int:
    """A recipe command: checked before hydra runs, then run by hydra with ``signals`` watching its job."""
    recipe, job_name = COMMANDS[command]
    _NEW_PARENTS.clear()
    _EXISTED.clear()
    overrides = _with_run_recipe(_with_resume(overrides, recipe), recipe)
    hydra_flags = any(o.startswith("-") for o in overrides)  # hydra's flags (--cfg, -m, --help) go to hydra as they are
    problem = None
    if distributed and {"-m", "--multirun"} & set(overrides):
        problem = "multirun (-m) starts one job after the other in one process: run each job with its own torchrun."
    elif distributed and not hydra_flags:
        problem, overrides = _join_ranks(recipe, overrides)
    elif distributed:
        # Hydra's flags (--config-dir, ...) leave the composition to hydra: the folder must be named, alike everywhere.
        given = [o for o in overrides if o.startswith("hydra.run.dir=")]
        if not given or "${" in given[-1]:
            problem = ("under torchrun with hydra's flags (--config-dir, ...) name the run directory: hydra.run.dir=DIR "
                       "(the same for every process)")
        elif int(os.environ.get("RANK", 0)):
            overrides = [*(o for o in overrides if not o.startswith("hydra.output_subdir=")), *RANK_OVERRIDES]
    elif not hydra_flags:
        problem = _preflight(recipe, overrides)
    if problem:
        if int(os.environ.get("RANK", 0)) == 0:
            print(f"datafree: error: {problem}", file=sys.stderr)
        return 2

    import hydra

    from datafree import jobs
    from datafree.utils import dist

    job = getattr(jobs, job_name)

    @hydra.main(config_path=recipes_location(), config_name=recipe, version_base="1.3")
    def task(cfg):
        return _guarded(job, cfg, signals)

    saved_argv, saved_stdout = sys.argv, sys.stdout
    sys.argv = [f"datafree {command}", *overrides]
    try:
        if dist.rank():
            sys.stdout = open(os.devnull, "w")  # rank 0 prints for every rank
        task()
    finally:
        if sys.stdout is not saved_stdout:
            sys.stdout.close()
        sys.argv, sys.stdout = saved_argv, saved_stdout
        dist.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
