"""The documentation site builds with ``mkdocs build --strict``: a broken link, anchor or page fails this test."""
import os
import subprocess
import sys

from markdown_blocks import ROOT


def test_the_site_builds_strictly(tmp_path):
    site = tmp_path / "site"
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")  # mkdocs-material's banner about MkDocs 2.0, not a warning
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    # What the hook adds from outside docs/: the home page is the README, DESIGN.md a page, assets/ files.
    home = (site / "index.html").read_text()
    assert "<h1 id=\"datafree\">datafree" in home and 'src="assets/fast_resnet34_samples.png"' in home
    assert "Package layout" in (site / "design" / "index.html").read_text()
    assert (site / "assets" / "accuracy_vs_time.png").is_file()
    # The API reference is rendered from the docstrings, not left as ':::' lines.
    api = (site / "api" / "datafree" / "index.html").read_text()
    assert 'id="datafree.distill_student"' in api and ":::" not in api
