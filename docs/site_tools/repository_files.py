"""mkdocs hook: the repository's own Markdown and pictures in the site, at the paths the sources use.

The pages are written to read the same on GitHub: README.md links ``docs/methods.md`` and shows
``assets/accuracy_vs_time.png``; a page in ``docs/`` links ``../DESIGN.md`` and shows
``../assets/...``. mkdocs only sees ``docs/``. This hook adds the rest of what the pages show:
README.md becomes the site's home page, DESIGN.md its design page, and every file under
``assets/`` a file of the site, each read from where it lies (nothing is copied into ``docs/``).
It then rewrites each relative link of a page from a path in the repository to a path in the
site. A link to anything else outside ``docs/`` is left alone, so that ``mkdocs build --strict``
reports it as a broken link.
"""
from __future__ import annotations

import posixpath
import re
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

REPOSITORY = Path(__file__).resolve().parents[2]
DOCS = "docs"
PAGES = {"README.md": "index.md", "DESIGN.md": "design.md"}  # repository path -> site path
FOLDERS = ("assets",)  # whole folders of the repository served at the same path in the site

_LINK = re.compile(r"(\]\()([^()\s]+)(\))")  # ](target) of an inline link or image
_FENCE = re.compile(r"^\s*(```|~~~)")
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)


def site_path(repository_path: str) -> str | None:
    """Where a repository file lies in the site; None when the site does not hold it."""
    if repository_path in PAGES:
        return PAGES[repository_path]
    if repository_path.startswith(DOCS + "/"):
        return repository_path[len(DOCS) + 1:]
    if repository_path.split("/")[0] in FOLDERS:
        return repository_path
    return None


def repository_path(site_uri: str) -> str:
    """The repository path of a page of the site (the inverse of site_path for pages)."""
    for source, uri in PAGES.items():
        if uri == site_uri:
            return source
    return f"{DOCS}/{site_uri}"


def on_config(config):
    for source in PAGES:
        config.watch.append(str(REPOSITORY / source))  # mkdocs serve rebuilds when they change
    config.watch.extend(str(REPOSITORY / folder) for folder in FOLDERS)
    return config


def on_files(files, config):
    for source, uri in PAGES.items():
        if files.get_file_from_path(uri) is not None:
            raise PluginError(f"docs/{uri} would hide {source}, which this hook serves as {uri}: remove one of them.")
        files.append(File.generated(config, uri, abs_src_path=str(REPOSITORY / source)))
    for folder in FOLDERS:
        for path in sorted((REPOSITORY / folder).rglob("*")):
            if path.is_file():
                files.append(File.generated(config, path.relative_to(REPOSITORY).as_posix(), abs_src_path=str(path)))
    return files


def on_page_markdown(markdown, page, config, files):
    here = repository_path(page.file.src_uri)
    lines, fenced = [], False
    for line in markdown.splitlines(keepends=True):
        if _FENCE.match(line):
            fenced = not fenced
        lines.append(line if fenced else _LINK.sub(lambda m: m[1] + _rewrite(m[2], here, page.file.src_uri) + m[3], line))
    return "".join(lines)


def _rewrite(target: str, here: str, page_uri: str) -> str:
    """A link target written for the repository, as the site needs it."""
    if target.startswith(("#", "/")) or _SCHEME.match(target):
        return target
    path, hash_, anchor = target.partition("#")
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(here), path))
    in_site = None if resolved.startswith("..") else site_path(resolved)
    if in_site is None:
        return target  # not part of the site: mkdocs reports it
    return posixpath.relpath(in_site, posixpath.dirname(page_uri) or ".") + hash_ + anchor
