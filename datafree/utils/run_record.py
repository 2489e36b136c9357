"""What hydra recorded of a run in its ``.hydra`` folder that later commands read: the folder the run was started in,
against which the relative paths of its settings (``data.root``, ``teacher.checkpoint``, ...) were read."""
from __future__ import annotations

from pathlib import Path

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
