"""The suite writes nothing outside temporary folders (conftest's temporary HOME), subprocesses included."""
import os
import subprocess
import sys
from pathlib import Path

from PIL import Image


def test_a_cli_run_caches_decoded_images_in_the_temporary_home(tmp_path, tmp_path_factory):
    home = Path(os.environ["HOME"])
    assert tmp_path_factory.getbasetemp() in home.parents
    for split in ("train", "test"):
        for label in ("a", "b"):
            folder = tmp_path / "data" / split / label
            folder.mkdir(parents=True)
            for k in range(4):
                Image.new("RGB", (8, 8), (60 * k, 200 if label == "a" else 0, 0)).save(folder / f"{k}.png")
    cache = home / ".cache" / "datafree"
    before = set(cache.glob("*.pt"))
    proc = subprocess.run([sys.executable, "-m", "datafree", "train-teacher", "data=imagefolder",
                           f"data.root={tmp_path / 'data'}", "data.num_classes=2", "data.image_size=8", "data.batch_size=4",
                           "teacher.arch=microcnn", "teacher.train.epochs=1", "device=cpu", "progress=false",
                           f"hydra.run.dir={tmp_path / 'run'}"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(set(cache.glob("*.pt")) - before) == 2  # the train and test splits, decoded once
