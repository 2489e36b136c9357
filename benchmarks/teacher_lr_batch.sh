#!/usr/bin/env bash
# train-teacher's learning rate at a small batch (docs/benchmarks.md, "train-teacher's learning rate follows the batch"):
# a torchvision ResNet-18 from scratch on a grey 64-px ImageFolder of three drawn shapes (400 training and 100 test
# images a class, made here), data.batch_size=64, 4 epochs, with teacher.train.lr=auto (0.2 x 64/512 = 0.025) and
# with the fixed 0.2 that was the default before, seeds 0-2. On the 2-core machine, from the repository root:
#   benchmarks/teacher_lr_batch.sh [OUT_DIR]
set -euo pipefail
out=${1:-.cache/teacher_lr_batch}; mkdir -p "$out"
python - "$out/images" <<'PY'
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

rng = np.random.default_rng(0)
root = Path(sys.argv[1])
for split, n in (("train", 400), ("test", 100)):
    for label, shape in enumerate(("circle", "square", "triangle")):
        folder = root / split / shape
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            image = Image.new("L", (64, 64), int(rng.integers(0, 100)))
            draw = ImageDraw.Draw(image)
            r, cx, cy = rng.integers(10, 20), rng.integers(20, 44), rng.integers(20, 44)
            fill = int(rng.integers(140, 256))
            if shape == "circle":
                draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
            elif shape == "square":
                draw.rectangle((cx - r, cy - r, cx + r, cy + r), fill=fill)
            else:
                draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
            noisy = np.asarray(image, dtype=np.float32) + rng.normal(0, 25, (64, 64))
            Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(folder / f"{i}.png")
PY
for seed in 0 1 2; do
  for lr in auto 0.2; do
    python -m datafree train-teacher teacher=torchvision teacher.name=resnet18 data=imagefolder "data.root=$out/images" \
        data.batch_size=64 teacher.train.epochs=4 "teacher.train.lr=$lr" "seed=$seed" progress=false \
        "hydra.run.dir=$out/lr_${lr}_s$seed" > "$out/lr_${lr}_s$seed.log" 2>&1
    echo "teacher.train.lr=$lr, seed $seed: $(grep -h 'test accuracy' "$out/lr_${lr}_s$seed.log" | tail -n 1)"
  done
done
