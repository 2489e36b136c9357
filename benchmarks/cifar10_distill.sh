#!/usr/bin/env bash
# One data-free distillation on CIFAR-10 on the GPU machine, logs under $OUT.
#   benchmarks/cifar10_distill.sh NAME TEACHER_PIECES_DIR [hydra overrides...]
# The teacher arrives as float16 pieces (benchmarks/shard_checkpoint.py), the test
# set as .cache/dev/data/test.tar.gz: both carried in .cache/dev.
set -euo pipefail
name=$1; pieces=$2; shift 2
python3 benchmarks/shard_checkpoint.py join "$pieces" ".cache/runs/teacher_$name.pt"
python3 -m datafree distill data=cifar10_jpeg data.root=.cache/dev/data teacher.checkpoint=".cache/runs/teacher_$name.pt" \
    progress=false hydra.run.dir=".cache/runs/$name" "$@" 2>&1 | grep -v -i warning | tee "$OUT/$name.log"
cp ".cache/runs/$name/summary.csv" "$OUT/${name}_summary.csv"
cp ".cache/runs/$name/samples.png" "$OUT/${name}_samples.png"
