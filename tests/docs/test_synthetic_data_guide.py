"""docs/synthetic_data.md's block, run as written in an empty folder: make, inspect, audit and reuse a data set.

A full CPU run (a teacher, 2,000 DeepInversion samples, an audit, an offline student): slow.
"""
import json
import re

import pytest

from markdown_blocks import blocks, play


@pytest.mark.slow
def test_synthetic_data_guide(tmp_path):
    steps = blocks("docs/synthetic_data.md")
    assert [k for k, _, _ in steps] == ["run"]
    (printed,) = play(steps, tmp_path, timeout=3600)
    manifest = json.loads((tmp_path / "outputs/synthetic/shapes/manifest.json").read_text())
    assert manifest["n"] == 2000 and manifest["class_counts"]["written"] == [200] * 10
    assert "checksums: all" in printed and "flagged near-duplicates (any):" in printed
    student = float(re.search(r"^student \S+: test accuracy ([\d.]+)%", printed, re.M).group(1))
    assert student > 20, printed[-3000:]  # chance is 10%; a noise export stays there
    # Everything it wrote is under outputs/, which .gitignore ignores.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outputs"]
