"""griffe extension: the docstrings' few reStructuredText habits, read as the Markdown the site renders.

datafree's docstrings are plain prose with ``double backticks`` (code in Markdown too), plus
three reST habits that Markdown shows as noise: roles (:class:`~datafree.data.ImageDataset`),
a paragraph ending in ``::`` before an indented example, and one simple table
(``datafree.distill.objectives``). This extension rewrites them in the loaded docstrings, for
the API reference only; the source keeps them.
"""
from __future__ import annotations

import re

from griffe import Extension

_ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj):`(~?)([^`]+)`")
_LITERAL_INTRO = re.compile(r"(\S)::$", re.M)
_BORDER = re.compile(r"^=+(?: +=+)+$")


def _role(match: re.Match) -> str:
    short, name = match.groups()
    return f"`{name.rsplit('.', 1)[-1] if short else name}`"


def _columns(border: str) -> list[tuple[int, int]]:
    return [m.span() for m in re.finditer(r"=+", border)]


def _cells(line: str, columns: list[tuple[int, int]]) -> list[str]:
    bounds = [start for start, _ in columns[1:]] + [None]
    return [line[start:end].strip() for (start, _), end in zip(columns, bounds)]


def _tables(text: str) -> str:
    """reST simple tables (border, header, border, rows, border) as Markdown tables."""
    lines, out, i = text.split("\n"), [], 0
    while i < len(lines):
        if _BORDER.match(lines[i]) and i + 2 < len(lines) and lines[i + 2] == lines[i]:
            columns = _columns(lines[i])
            end = next((j for j in range(i + 3, len(lines)) if lines[j] == lines[i]), None)
            if end is not None:
                header, rows = _cells(lines[i + 1], columns), [_cells(row, columns) for row in lines[i + 3:end]]
                out += ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
                out += ["| " + " | ".join(row) + " |" for row in rows]
                i = end + 1
                continue
        out.append(lines[i])
        i += 1
    return "\n".join(out)


def markdown_docstring(text: str) -> str:
    return _LITERAL_INTRO.sub(r"\1:", _ROLE.sub(_role, _tables(text)))


class RestHabitsAsMarkdown(Extension):
    def on_instance(self, *, obj, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown_docstring(obj.docstring.value)
