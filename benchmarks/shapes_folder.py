"""Write N new drawings of the demo's shapes as PNG files without their classes (a folder for synthesizer=images).

    python benchmarks/shapes_folder.py FOLDER N

Seed 7, not the seed of the teachers' training images: none of them is one a demo teacher was trained on.
"""
from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image

from datafree.data import build_dataset


def main(folder: Path, n: int) -> None:
    folder.mkdir()
    images = build_dataset("shapes", split="train", n=n, seed=7, image_size=32).images  # uint8 (N, 3, 32, 32)
    for k, image in enumerate(images.permute(0, 2, 3, 1).numpy()):
        Image.fromarray(image).save(folder / f"{k:05d}.png")


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
