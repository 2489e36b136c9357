"""The recipes live at the top level (recipes/) and ship inside the wheel as datafree.recipes."""
from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_listed_in_pyproject():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "datafree").rglob("__init__.py")}
    assert found - listed == set(), "add these packages to [tool.setuptools] packages in pyproject.toml"
    assert "datafree.recipes" in listed and (ROOT / "recipes" / "__init__.py").is_file()


def test_the_installed_recipes_are_the_top_level_folder():
    import datafree.recipes

    assert Path(datafree.recipes.__file__).resolve().parent == ROOT / "recipes"


def _bare_venv(folder: Path) -> tuple[Path, Path]:
    """A fresh venv without datafree; the test environment's other packages (torch, hydra, ...) are made
    visible through a .pth file, so nothing is downloaded. Returns (python, site-packages)."""
    venv = folder / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # not the editable datafree's finder
    return python, site


def _clean_env() -> dict:
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def test_a_source_checkout_runs_without_installing(tmp_path):
    """python -m datafree from the repository, datafree not installed: the CLI reads the top-level recipes/."""
    python, _ = _bare_venv(tmp_path)
    done = subprocess.run([str(python), "-m", "datafree", "distill", "--cfg", "job", "experiment=demo_dfq"], cwd=ROOT,
                          env=_clean_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "synthesizer:" in done.stdout


def test_a_wheel_carries_the_recipes_and_composes_from_an_unrelated_folder(tmp_path):
    """Build the wheel, install it into a fresh venv and compose a recipe from an empty folder."""
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels),
                    str(ROOT)], check=True)
    wheel = next(wheels.glob("datafree-*.whl"))
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    assert "datafree/recipes/distill.yaml" in names and "datafree/recipes/experiment/demo_dfq.yaml" in names
    python, site = _bare_venv(tmp_path)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", str(wheel)],
                   check=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = _clean_env()
    done = subprocess.run([str(python.parent / "datafree"), "distill", "--cfg", "job", "experiment=demo_dfq"],
                          cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "synthesizer:" in done.stdout and "tinycnn" in done.stdout
    where = subprocess.run([str(python), "-c", "import datafree.recipes as r; print(r.__file__)"], cwd=elsewhere,
                           env=env, capture_output=True, text=True, check=True).stdout
    assert str(site) in where and str(ROOT) not in where
