#!/usr/bin/env bash
# train-teacher's learning rate at a small batch (docs/benchmarks.md, "train-teacher's learning rate follows the batch"):
# a torchvision ResNet-18 from scratch on a grey 64-px ImageFolder of three drawn shapes (400 training and 100 test
# images a class, made by make_grey_shapes.py), data.batch_size=64, 4 epochs, with teacher.train.lr=auto (0.2 x 64/512 = 0.025) and
# with the fixed 0.2 that was the default before, seeds 0-2. On the 2-core machine, from the repository root:
#   benchmarks/teacher_lr_batch.sh [OUT_DIR]
set -euo pipefail
out=${1:-.cache/teacher_lr_batch}; mkdir -p "$out"
python benchmarks/make_grey_shapes.py "$out/images"   # 400 training and 100 test images a class
for seed in 0 1 2; do
  for lr in auto 0.2; do
    python -m datafree train-teacher teacher=torchvision teacher.name=resnet18 data=imagefolder "data.root=$out/images" \
        data.batch_size=64 teacher.train.epochs=4 "teacher.train.lr=$lr" "seed=$seed" progress=false \
        "hydra.run.dir=$out/lr_${lr}_s$seed" > "$out/lr_${lr}_s$seed.log" 2>&1
    echo "teacher.train.lr=$lr, seed $seed: $(grep -h 'test accuracy' "$out/lr_${lr}_s$seed.log" | tail -n 1)"
  done
done
