#!/usr/bin/env bash
# Synthesis with an ImageNet-size teacher on one GPU (issue 11, item 6), on the GPU machine (repo root, after
# `source benchmarks/device_env.sh`):
#   benchmarks/large_teacher.sh [TEACHER] [STUDENT]          # default: torchvision resnet50 -> resnet18
# For DeepInversion and the generator methods (dfad, dafl, zskt, dfq) and the fast synthesizer: the largest
# batch (of BATCHES) whose synthesis round fits in GPU memory, its images/s and peak memory, with random-weight
# torchvision networks at SIZE px (benchmarks/large_teacher.py says how each is timed). Writes
# $OUT/large_teacher.csv and prints it.
set -euo pipefail
teacher=${1:-resnet50}; student=${2:-resnet18}
SIZE=${SIZE:-224}; BATCHES=${BATCHES:-512,256,128,64,32,16,8}; ROUNDS=${ROUNDS:-5}
METHODS=${METHODS:-deepinversion,dfad,dafl,zskt,dfq,fast}
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
python3 benchmarks/large_teacher.py --teacher "$teacher" --student "$student" --size "$SIZE" --methods "$METHODS" \
    --batches "$BATCHES" --rounds "$ROUNDS" | tee "$OUT/large_teacher.csv"
