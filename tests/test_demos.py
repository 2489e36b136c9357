"""Every demo docs/getting_started.md names beats its noise baseline, with the figures the page states.

The default demo ('datafree distill') runs in the fast suite: it is what a newcomer
runs first (the README's first command). The generator demos take minutes each and are marked slow.
"""
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "getting_started.md"  # where the demo's figures and ranges are stated
PERCENT = r"(\d+(?:\.\d+)?)"


def stated_range(label: str) -> tuple[float, float]:
    """The guide's 'LABEL A–B%' range, in percent."""
    found = re.search(rf"{label} {PERCENT}–{PERCENT}%", " ".join(GUIDE.read_text().split()))
    assert found, f"{GUIDE.relative_to(ROOT)} states no range for {label!r}"
    return float(found.group(1)), float(found.group(2))


def run_demo(tmp_path, *overrides) -> tuple[dict[str, float], str]:
    """``datafree distill OVERRIDES`` as a user runs it: the accuracies it prints, in percent, and all it prints."""
    proc = subprocess.run([sys.executable, "-m", "datafree", "distill", *overrides, "progress=false",
                           f"hydra.run.dir={tmp_path / 'run'}"], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = {}
    for name, pattern in {"teacher": r"^teacher \S+: test accuracy ", "student": r"^student \S+: test accuracy ",
                          "noise": r"^baseline: .* test accuracy "}.items():
        found = re.search(pattern + PERCENT + "%", proc.stdout, re.MULTILINE)
        assert found, proc.stdout
        printed[name] = float(found.group(1))
    print(f"distill {' '.join(overrides)}: {printed}")  # shown with pytest -rA: the figures behind the guide's
    return printed, proc.stdout


def assert_within(value: float, bounds: tuple[float, float], what: str) -> None:
    assert bounds[0] <= value <= bounds[1], f"{what} {value}% is outside the guide's {bounds[0]}–{bounds[1]}%"


@pytest.mark.long(150)
def test_default_demo_matches_the_guide(tmp_path):
    printed, stdout = run_demo(tmp_path)
    assert_within(printed["teacher"], stated_range("teacher"), "teacher")
    assert_within(printed["student"], stated_range("student"), "student")
    assert_within(printed["noise"], stated_range("noise-trained student"), "noise-trained student")
    assert printed["student"] >= printed["noise"] + 20  # clearly, not by luck
    # The rest of what the guide says it prints: chance level and the run folder with what it holds.
    run = tmp_path / "run"
    assert "chance: 10.00%" in stdout and f"run folder: {run}" in stdout
    for name in ("student.pt", "samples.png", "summary.csv", "tensorboard/", "noise_baseline/"):
        assert f"  {name} " in stdout and (run / name.rstrip("/")).exists(), name


@pytest.mark.slow
@pytest.mark.parametrize("method", ["dfq", "dafl"])  # the generator demos the guide names as working
def test_generator_demos_match_the_guide(tmp_path, method):
    assert f"demo_{method}" in GUIDE.read_text()
    printed, _ = run_demo(tmp_path, f"experiment=demo_{method}")
    assert_within(printed["student"], stated_range("generator demos end with students of"), f"demo_{method} student")
    assert_within(printed["noise"], stated_range("against noise baselines of"), f"demo_{method} noise baseline")
    assert printed["student"] >= printed["noise"] + 10
