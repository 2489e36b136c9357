#!/usr/bin/env bash
# The GPU rows of docs/benchmarks.md's "Shipping a student" table, in one command on the GPU machine (repo root):
#   benchmarks/ship_fast_pairs.sh DATA_DIR TEACHER_S STUDENT_S
# 1. train-teacher resnet34 and wrn40_2 side by side (recipes/teacher/train/cifar.yaml: plain cross-entropy),
#    TEACHER_S seconds of training each, under /tmp/ship_teachers (skipped when a teacher.pt is there);
# 2. distill the two fast recipes (experiment=cifar10_resnet34_resnet18_fast, ..._wrn40_2_wrn16_1_fast) side by
#    side, unchanged but for trainer.time_budget_s=STUDENT_S (their own budgets are 540 s and 300 s alone);
# 3. benchmarks/ship.sh on each finished run, one after the other (its CPU latencies need the CPU to themselves).
# Everything worth keeping goes to $OUT/<pair>/ (default .cache/ship_fast_pairs). OVERRIDES go to every command
# (a dry run on the CPU: OVERRIDES=device=cpu benchmarks/ship_fast_pairs.sh DATA 5 10).
set -euo pipefail
data=$1; teacher_s=$2; student_s=$3
OUT=${OUT:-.cache/ship_fast_pairs}; T=/tmp/ship_teachers
declare -A student_of=([resnet34]=resnet18 [wrn40_2]=wrn16_1)
mkdir -p "$OUT" "$T"
read -ra extra <<< "${OVERRIDES:-}"
common=(data=cifar10_jpeg "data.root=$data" progress=false "${extra[@]}")
for t in resnet34 wrn40_2; do
  [ -f "$T/$t/teacher.pt" ] && continue
  python3 -m datafree train-teacher "${common[@]}" teacher="$t" "teacher.train.time_budget_s=$teacher_s" \
      "hydra.run.dir=$T/$t" > "$OUT/teacher_$t.log" 2>&1 &
done
wait
for t in resnet34 wrn40_2; do
  tail -n 2 "$OUT/teacher_$t.log" 2>/dev/null || true
  pair=${t}_${student_of[$t]}
  rm -rf "/tmp/ship_runs/$pair"  # a new run each call (distill refuses a folder holding a saved state)
  python3 -m datafree distill "${common[@]}" "experiment=cifar10_${pair}_fast" "teacher.checkpoint=$T/$t/teacher.pt" \
      "trainer.time_budget_s=$student_s" "hydra.run.dir=/tmp/ship_runs/$pair" > "$OUT/distill_$pair.log" 2>&1 &
done
wait || true
for t in resnet34 wrn40_2; do
  pair=${t}_${student_of[$t]}
  echo "== $pair"; tail -n 12 "$OUT/distill_$pair.log"
  benchmarks/ship.sh "/tmp/ship_runs/$pair" "$OUT/$pair" data=cifar10_jpeg "data.root=$data" "${extra[@]}" \
      > "$OUT/ship_$pair.log" 2>&1 || { tail -n 20 "$OUT/ship_$pair.log"; continue; }
  cat "$OUT/$pair/ship.md"
done
