#!/usr/bin/env bash
# Several distillation runs side by side on one GPU, to rank settings (GPU machine, repo root):
#   benchmarks/variants.sh TEACHER_PIECES_DIR BUDGET_S NAME="overrides ..." [NAME="..." ...]
# Runs share the GPU, so each gets a fraction of it: compare them with each other, not with
# runs that had the GPU alone. The teacher arrives as float16 pieces (benchmarks/shard_checkpoint.py),
# the test set as .cache/dist/data/test.tar.gz; each run's log and summary.csv go to $OUT.
set -euo pipefail
set -f  # overrides may hold [lists]: no file-name expansion
pieces=$1; budget=$2; shift 2
# A fresh folder per call: on a machine still warm from an earlier call, a run folder of the same name
# would be refused (it holds a saved state) and its old summary.csv copied as if it were new.
mkdir -p /tmp/runs
runs=$(mktemp -d /tmp/runs/variants.XXXXXX)
python3 benchmarks/shard_checkpoint.py join "$pieces" "$runs/teacher.pt"
for spec in "$@"; do
  name=${spec%%=*}; overrides=${spec#*=}
  # shellcheck disable=SC2086  # the overrides are meant to split into words
  python3 -m datafree distill data=cifar10_jpeg data.root=.cache/dist/data teacher.checkpoint="$runs/teacher.pt" \
      trainer.time_budget_s="$budget" progress=false hydra.run.dir="$runs/$name" $overrides \
      > "$runs/$name.log" 2>&1 &
done
wait || true
for spec in "$@"; do
  name=${spec%%=*}
  grep -v -i warning "$runs/$name.log" | tail -n 4
  cp "$runs/$name.log" "$OUT/$name.log"
  cp "$runs/$name/summary.csv" "$OUT/${name}_summary.csv" 2>/dev/null || true
done
