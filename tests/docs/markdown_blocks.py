"""Code blocks of the docs, as the tests run them: ``<!-- file: PATH -->`` and ``<!-- run -->`` markers."""
from __future__ import annotations

import re
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
