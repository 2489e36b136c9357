"""Code blocks of the docs, as the tests run them: ``<!-- file: PATH -->``, ``<!-- run -->`` and ``<!-- python -->`` markers."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_BLOCK = re.compile(r"<!-- (file: (?P<path>\S+)|run|python) -->\s*\n```[a-z]*\n(?P<body>.*?)```", re.S)


def blocks(doc: str) -> list[tuple[str, str | None, str]]:
    """(kind, path, body) in document order; kind is 'file', 'run' or 'python'."""
    text = (ROOT / doc).read_text()
    found = []
    for match in _BLOCK.finditer(text):
        marker = match.group(1)
        kind = "file" if marker.startswith("file:") else marker
        found.append((kind, match.group("path"), match.group("body")))
    return found


def user_env() -> dict[str, str]:
    """A user's shell: this Python's scripts (datafree) on PATH, no PYTHONPATH of the test run."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    env.pop("PYTHONPATH", None)
    return env


def play(steps, folder: Path, timeout: int = 300) -> list[str]:
    """Write the 'file' blocks into ``folder`` and run the 'run' blocks there, in order, as a user would.

    A run block is one bash script that stops at its first failing command. Returns what each
    run block printed (stdout + stderr).
    """
    outputs = []
    for kind, path, body in steps:
        if kind == "file":
            (folder / path).parent.mkdir(parents=True, exist_ok=True)
            (folder / path).write_text(body)
            continue
        assert kind == "run", kind
        proc = subprocess.run(["bash", "-e", "-c", body], cwd=folder, env=user_env(), capture_output=True, text=True,
                              timeout=timeout)
        assert proc.returncode == 0, f"{body}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
        outputs.append(proc.stdout + proc.stderr)
    return outputs


def commands(body: str) -> list[str]:
    """The commands of a run block, without comments and blank lines, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", body)
    return [line.split("  #")[0].strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]
