#!/usr/bin/env bash
# One data-free distillation on CIFAR-10 on the GPU machine (repo root), logs under $OUT:
#   benchmarks/cifar10_distill.sh NAME TEACHER_PIECES_DIR [hydra overrides...]
# The teacher arrives as float16 pieces (benchmarks/shard_checkpoint.py), the test set as
# .cache/dist/data/test.tar.gz: both carried in .cache/dist. summary.csv is copied to $OUT as
# the run goes, so a run cut short by the machine still reports its curve.
set -euo pipefail
name=$1; pieces=$2; shift 2
mkdir -p /tmp/runs
python3 benchmarks/shard_checkpoint.py join "$pieces" "/tmp/runs/teacher_$name.pt"
source benchmarks/runs.sh
keep_curve "/tmp/runs/$name/summary.csv" "$OUT/${name}_summary.csv"
python3 -m datafree distill data=cifar10_jpeg data.root=.cache/dist/data teacher.checkpoint="/tmp/runs/teacher_$name.pt" \
    progress=false hydra.run.dir="/tmp/runs/$name" "$@" 2>&1 | grep -v -i warning | tee "$OUT/$name.log"
stop_curves
cp "/tmp/runs/$name/samples.png" "$OUT/${name}_samples.png"
