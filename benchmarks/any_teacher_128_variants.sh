#!/usr/bin/env bash
# Variants of the 128-px student side by side on the one GPU, on the teacher benchmarks/any_teacher_128.sh left in
# /tmp/t128 (run that first, with STUDENT_S=0 for the teacher only), from the repository root:
#   benchmarks/any_teacher_128_variants.sh DATA_DIR STUDENT_S NAME="overrides ..." [NAME="..." ...]
# Each variant is experiment=fast into a torchvision ResNet-18 (STUDENT=... for another) with its overrides, for
# STUDENT_S seconds, evaluated every 25 rounds. The runs share the GPU: compare them with each other, not with runs
# that had it alone. Four or more at once took trainer.pool_capacity set, when each auto pool took a quarter of the
# memory free at its start up front; pools now take their memory as they fill (up to that quarter), and one that
# cannot grow further stops growing with a warning. Logs and summary.csv files go to $OUT (default .cache/any_teacher_128), with
# NAME_bn_scale.txt: benchmarks/bn_scale.py on each finished run's synthetic images beside real ones and noise, layer
# by layer (BN_SCALE=0 skips it).
set -euo pipefail
set -f  # overrides may hold [lists]: no file-name expansion
data=$1; student_s=$2; shift 2
OUT=${OUT:-.cache/any_teacher_128}; T=${TEACHER_DIR:-/tmp/t128}; STUDENT=${STUDENT:-resnet18}; BN_SCALE=${BN_SCALE:-1}
mkdir -p "$OUT"
for spec in "$@"; do
  name=${spec%%=*}; overrides=${spec#*=}
  rm -rf "/tmp/v128_$name"  # a new run each call (distill refuses a folder holding a saved state)
  # shellcheck disable=SC2086  # the overrides are meant to split into words
  python3 -m datafree distill data=cifar10_jpeg "data.root=$data" data.image_size=128 progress=false experiment=fast \
      "teacher.checkpoint=$T/teacher.pt" student=torchvision "student.name=$STUDENT" "trainer.time_budget_s=$student_s" \
      trainer.eval_every=25 $overrides "hydra.run.dir=/tmp/v128_$name" > "$OUT/$name.log" 2>&1 &
  sleep 2  # staggered starts: each auto pool then sees the memory the earlier runs took
done
wait || true
for spec in "$@"; do
  name=${spec%%=*}; echo "== $name"; grep -E "synthesizer:|round .* step|error|WARNING" "$OUT/$name.log" | tail -n 6
  cp "/tmp/v128_$name/summary.csv" "$OUT/${name}_summary.csv" 2>/dev/null || true
  if [ "$BN_SCALE" = 1 ] && [ -f "/tmp/v128_$name/state_last.pt" ]; then
    python3 benchmarks/bn_scale.py "$T/teacher.pt" "$data/test.tar.gz" --pool "/tmp/v128_$name" \
        > "$OUT/${name}_bn_scale.txt" 2>&1 && tail -n 10 "$OUT/${name}_bn_scale.txt"
  fi
done
