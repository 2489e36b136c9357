"""A user's kind of data for CPU benchmarks: a grey 64-px ImageFolder of three drawn shapes with noise.

Circles, squares and triangles (one folder each) of random size, place and brightness on a random dark background,
with Gaussian pixel noise; 400 training and 100 test images a class by default. The same seed makes the same images
(the train-teacher and distillation benchmarks on this data rely on it). From the repository root:
    python benchmarks/make_grey_shapes.py OUT_DIR [--train 400 --test 100 --seed 0]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle")


def make_grey_shapes(root: Path, train: int = 400, test: int = 100, seed: int = 0, size: int = 64) -> None:
    rng = np.random.default_rng(seed)
    for split, n in (("train", train), ("test", test)):
        for shape in SHAPES:
            folder = root / split / shape
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                image = Image.new("L", (size, size), int(rng.integers(0, 100)))
                draw = ImageDraw.Draw(image)
                r, cx, cy = rng.integers(10, 20), rng.integers(20, 44), rng.integers(20, 44)
                fill = int(rng.integers(140, 256))
                if shape == "circle":
                    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
                elif shape == "square":
                    draw.rectangle((cx - r, cy - r, cx + r, cy + r), fill=fill)
                else:
                    draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
                noisy = np.asarray(image, dtype=np.float32) + rng.normal(0, 25, (size, size))
                Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(folder / f"{i}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--train", type=int, default=400, help="training images a class")
    parser.add_argument("--test", type=int, default=100, help="test images a class")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    make_grey_shapes(args.out, args.train, args.test, args.seed)


if __name__ == "__main__":
    main()
