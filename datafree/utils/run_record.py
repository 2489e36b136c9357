"""What hydra recorded of a run in its ``.hydra`` folder that later commands read: the settings the run was started
with (a resume and ``synthesize from_run=`` take them) and the folder it was started in, against which the relative
paths of those settings (``data.root``, ``teacher.checkpoint``, ...) were read."""
from __future__ import annotations

from pathlib import Path

# The groups of a distill run's settings that ``synthesize from_run=RUN`` takes from the run (cli._with_run_recipe).
RUN_RECIPE_GROUPS = ("experiment", "teacher", "student", "synthesizer", "data")

# The last part of a setting's key that names a file or folder (data.root, data.path, teacher.checkpoint, ...).
PATH_KEYS = ("root", "path", "checkpoint")


def started_in(run_dir: str | Path) -> Path | None:
    """The folder the run in ``run_dir`` was started from (hydra's record), or None without such a record."""
    from omegaconf import OmegaConf

    try:
        cwd = OmegaConf.select(OmegaConf.load(Path(run_dir).expanduser() / ".hydra" / "hydra.yaml"), "hydra.runtime.cwd")
    except Exception:  # noqa: BLE001 - no record (or not hydra's): its paths are read from here
        return None
    return Path(cwd) if cwd else None


def anchored_path(key: str, value, base: Path | None):
    """``value`` of setting ``key`` read from ``base`` when it names a file or folder there by a relative path, else
    as it is."""
    if (base is not None and key.rsplit(".", 1)[-1] in PATH_KEYS and isinstance(value, str) and value
            and not Path(value).is_absolute() and (base / value).exists()):
        return str(base / value)
    return value


def started_with(run_dir: str | None, recipe: str) -> list[str]:
    """The command-line settings the run in ``run_dir`` was started with (hydra's record of them), or none; none
    either for a run of another recipe, whose settings this one may lack (run_state refuses such a resume by name)."""
    if not run_dir or "${" in run_dir:
        return []
    record = Path(run_dir).expanduser() / ".hydra"
    try:
        from omegaconf import OmegaConf

        made_by = OmegaConf.select(OmegaConf.load(record / "hydra.yaml"), "hydra.job.config_name", default=recipe)
        saved = OmegaConf.to_container(OmegaConf.load(record / "overrides.yaml"))
    except Exception:  # noqa: BLE001 - no record (or not hydra's): the command alone says what the run is
        return []
    if made_by != recipe:
        return []
    return [o for o in saved if isinstance(o, str) and not o.startswith("hydra.")] if isinstance(saved, list) else []


def override_key(override: str) -> str:
    """The key an override sets (``+key=v``, ``++key=v``, ``~key`` and ``key=v`` set ``key``)."""
    return override.split("=", 1)[0].lstrip("+~")
