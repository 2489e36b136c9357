"""``datafree <command> [hydra overrides]``: the command picks the recipe, hydra the rest.

Bad input ends with one line on stderr, exit status 2, and no half-written
run directory; hydra's own errors (unknown recipe names, bad overrides) keep
hydra's message, which already lists the valid choices.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Callable

COMMANDS: dict[str, tuple[str, str, str]] = {
    # command: (recipe, job function in datafree.jobs, help)
    "train-teacher": ("train_teacher", "train_teacher_job", "train a zoo model on real data; writes teacher.pt"),
    "distill": ("distill", "distill_job", "distil a teacher into a student on synthetic data; writes student.pt"),
}

USAGE = """usage: datafree <command> [key=value ...]

commands:
{commands}

With no overrides, 'datafree distill' runs the embedded CPU demo: it trains a small
teacher on a generated shapes data set, then distils it data-free into a smaller
student and compares it with a student distilled on random noise.
Examples:
  datafree distill
  datafree train-teacher teacher=resnet34 data=cifar10_jpeg
  datafree distill experiment=cifar10_resnet34_resnet18 teacher.checkpoint=PATH
  datafree distill teacher=module teacher.model._target_=my_pkg.MyNet teacher.checkpoint=PATH
  (teacher sources: datafree checkpoints, module, torchvision, torchscript, ensemble; see docs/custom_teacher.md)
Hydra's own flags work too: --cfg job, --help, -m (multirun)."""


def usage() -> str:
    lines = "\n".join(f"  {name:<14} {text}" for name, (_, _, text) in COMMANDS.items())
    return USAGE.format(commands=lines)


def _guarded(job: Callable, cfg) -> dict | None:
    from hydra.core.hydra_config import HydraConfig

    from datafree.errors import DatafreeError

    out_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        return job(cfg, out_dir)
    except Exception as error:  # noqa: BLE001 - only DatafreeError is handled, the rest re-raised
        cause = _datafree_cause(error, DatafreeError)
        if cause is None:
            raise
        _remove_if_only_hydra_files(out_dir)
        print(f"datafree: error: {cause}", file=sys.stderr)
        sys.exit(2)


def _datafree_cause(error: BaseException, kind: type) -> BaseException | None:
    """The DatafreeError behind ``error``: hydra's instantiate wraps what constructors raise."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, kind):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def _remove_if_only_hydra_files(out_dir: Path) -> None:
    """Drop a run directory that holds nothing but hydra's own bookkeeping."""
    if not out_dir.is_dir():
        return
    if any(p.name != ".hydra" and p.suffix != ".log" for p in out_dir.iterdir()):
        return  # real outputs (e.g. the last good checkpoint) stay where they are
    shutil.rmtree(out_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    command, overrides = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"datafree: error: unknown command {command!r}: choose one of {', '.join(COMMANDS)}.\n\n{usage()}",
              file=sys.stderr)
        return 2
    recipe, job_name, _ = COMMANDS[command]

    import hydra

    from datafree import jobs

    job = getattr(jobs, job_name)

    @hydra.main(config_path="recipes", config_name=recipe, version_base="1.3")
    def task(cfg):
        return _guarded(job, cfg)

    saved_argv = sys.argv
    sys.argv = [f"datafree {command}", *overrides]
    try:
        task()
    finally:
        sys.argv = saved_argv
    return 0


if __name__ == "__main__":
    sys.exit(main())
