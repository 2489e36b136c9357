#!/usr/bin/env bash
# train-teacher with teacher.train.bn_momentum=keep and =auto (docs/benchmarks.md, "train-teacher's MobileNetV3: the
# same lag"), on the CPU from the repository root, three seeds each (about 2.5 minutes a run on 2 cores):
#   benchmarks/bn_momentum_teacher.sh [OUT]        (default .cache/bn_momentum_teacher)
#   EPOCHS=20 SEEDS=0 benchmarks/bn_momentum_teacher.sh OUT20      (the longer schedule, one seed)
# A torchvision MobileNetV3-Small (BatchNorm momentum 0.01) from scratch on the demo's shapes at 32 px, with the
# demo teacher's short schedule (6 epochs, one-cycle, rate 0.05); the two settings train alike (the same losses:
# training uses each batch's statistics) and differ in the running statistics that evaluation uses.
set -euo pipefail
OUT=${1:-.cache/bn_momentum_teacher}; mkdir -p "$OUT"
EPOCHS=${EPOCHS:-6}; read -ra seeds <<< "${SEEDS:-0 1 2}"
for seed in "${seeds[@]}"; do
  for setting in keep auto; do
    python3 -m datafree train-teacher teacher=torchvision teacher.name=mobilenet_v3_small data.image_size=32 \
        "teacher.train.epochs=$EPOCHS" teacher.train.lr=0.05 teacher.train.schedule=onecycle teacher.train.warmup=0.15 \
        "teacher.train.bn_momentum=$setting" "seed=$seed" progress=false "hydra.run.dir=$OUT/${setting}_s$seed" \
        > "$OUT/${setting}_s$seed.log" 2>&1
    echo "$setting, seed $seed: $(grep -h 'test accuracy' "$OUT/${setting}_s$seed.log" | tail -n 1)"
  done
done
# How each teacher answers in eval mode: its accuracy and the share of the test images given its most frequent class.
teachers=(); for setting in keep auto; do for seed in "${seeds[@]}"; do teachers+=("$OUT/${setting}_s$seed/teacher.pt"); done; done
python3 - "${teachers[@]}" <<'PY'
import sys

import torch

import datafree
from datafree.data import build_dataset
from datafree.evaluate import evaluate

test = build_dataset(kind="shapes", split="test", n=2000, image_size=32, seed=0)  # the data recipe's test split
batches = [(test.images.float() / 255, test.labels)]
for path in sys.argv[1:]:
    result = evaluate(datafree.load_teacher("datafree", checkpoint=path).model, batches, torch.device("cpu"),
                      amp=False, num_classes=10)
    print(f"{path}: accuracy {result['accuracy']:.4f}, top class share {result['top_class_share']:.3f}")
PY
