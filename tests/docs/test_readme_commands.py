"""The README's commands: the ones CI runs, and its command blocks, run as written.

The blocks are full CPU runs (minutes each), so running them is a slow test; the fast
tests check that the README still marks them, so that the slow ones cannot silently run nothing.
"""
import re

import pytest

from markdown_blocks import ROOT, blocks, commands, play

README_RUNS = [body for kind, _, body in blocks("README.md") if kind == "run"]


def _readme_commands() -> list[str]:
    fenced = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    return [command for body in fenced for command in commands(body)]


def test_ci_runs_the_readmes_test_command():
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert "python -m pytest" in _readme_commands() and ci[-1] == "python -m pytest"
    assert "datafree distill" in _readme_commands()  # the demo, tested by tests/test_demos.py
    assert 'pip install -e ".[dev]"' in _readme_commands() and any("install -q -e '.[dev]'" in line for line in ci)


def test_readme_marks_its_three_command_blocks():
    assert len(README_RUNS) == 3, README_RUNS
    assert "teacher=module" in README_RUNS[0] and "datafree synthesize" in README_RUNS[1]
    assert "datafree deploy" in README_RUNS[2]


@pytest.mark.parametrize("index, guide", [(1, "docs/synthetic_data.md"), (2, "docs/shipping.md")])
def test_readmes_commands_are_the_guides(index, guide):
    """The README's synthetic data set and shipping blocks are part of their guides' blocks, which slow tests run."""
    (guide_block,) = [body for kind, _, body in blocks(guide) if kind == "run"]
    readme, guide_commands = commands(README_RUNS[index]), commands(guide_block)
    assert readme and all(command in guide_commands for command in readme), (readme, guide_commands)
    assert [c for c in guide_commands if c in readme] == readme  # in the same order


@pytest.mark.slow
def test_readme_own_teacher_command(tmp_path):
    """In a folder that holds docs/custom_teacher.md's my_models.py and my_teacher.pt, the README's command."""
    guide = blocks("docs/custom_teacher.md")
    assert [k for k, _, _ in guide[:3]] == ["file", "file", "run"] and guide[0][1] == "my_models.py"
    play(guide[:3], tmp_path)  # my_models.py, train_my_teacher.py, and its run: my_teacher.pt
    (printed,) = play([("run", None, README_RUNS[0])], tmp_path, timeout=1800)
    assert "teacher my_models.ShapesNet: test accuracy" in printed
    student = float(re.search(r"^student \S+: test accuracy ([\d.]+)%", printed, re.M).group(1))
    noise = float(re.search(r"^baseline: .* test accuracy ([\d.]+)%", printed, re.M).group(1))
    assert student >= noise + 10, printed[-3000:]
