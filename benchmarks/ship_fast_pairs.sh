#!/usr/bin/env bash
# The GPU rows of docs/benchmarks.md's "Shipping a student" table, on the GPU machine (repo root):
#   benchmarks/ship_fast_pairs.sh DATA_DIR TEACHER_S STUDENT_S [PAIR ...]
# PAIR: resnet34_resnet18, wrn40_2_wrn16_1 (default: both).
# 1. train-teacher each pair's teacher side by side (recipes/teacher/train/cifar.yaml: plain cross-entropy),
#    TEACHER_S seconds of training each, under /tmp/ship_teachers (skipped when a teacher.pt is there; TEACHER_S=0
#    insists on that); float16 pieces of each new teacher go to $OUT/teachers/ (benchmarks/shard_checkpoint.py)
#    so that a machine handed back between commands does not cost the teachers;
# 2. distill the pairs' fast recipes (experiment=cifar10_PAIR_fast), unchanged but for trainer.time_budget_s=STUDENT_S
#    (STUDENT_S=full: each recipe's own budget, 540 s and 300 s; STUDENT_S=0: the teachers only), side by side, or
#    one after the other with SIDE_BY_SIDE=0 (each alone on the GPU, as the recipes were measured);
# 3. benchmarks/ship.sh on each finished run, one after the other (its CPU latencies need the CPU to themselves;
#    REPORT=0 deploys only, about half the time; SHIP=0 skips this step; STUDENT_S=done skips step 2 and ships the
#    runs a former call with the same $OUT finished on this machine).
# Longer than one command may last (10 minutes): the teachers in one command, then the pairs, on one held machine
# (the ResNet-18's 540 s and its deploy do not fit one command together). As run for docs/benchmarks.md on
# 2026-12-04, with each command's wall time (1,462 s in all; the same OUT in every command):
#   benchmarks/ship_fast_pairs.sh .cache/data 330 0                                              # 365 s
#   SIDE_BY_SIDE=0 SHIP=0 benchmarks/ship_fast_pairs.sh .cache/data 0 full resnet34_resnet18     # 560 s
#   benchmarks/ship_fast_pairs.sh .cache/data 0 done resnet34_resnet18 &&
#     SIDE_BY_SIDE=0 SHIP=0 benchmarks/ship_fast_pairs.sh .cache/data 0 full wrn40_2_wrn16_1     # 465 s
#   benchmarks/ship_fast_pairs.sh .cache/data 0 done wrn40_2_wrn16_1                             # 72 s
# Everything worth keeping goes to $OUT/<pair>/ (default .cache/ship_fast_pairs). OVERRIDES go to every command
# (a dry run on the CPU: OVERRIDES=device=cpu benchmarks/ship_fast_pairs.sh DATA 5 10).
set -euo pipefail
data=$1; teacher_s=$2; student_s=$3; shift 3
pairs=("$@"); [ ${#pairs[@]} -gt 0 ] || pairs=(resnet34_resnet18 wrn40_2_wrn16_1)
OUT=${OUT:-.cache/ship_fast_pairs}; T=/tmp/ship_teachers; SIDE_BY_SIDE=${SIDE_BY_SIDE:-1}
declare -A teacher_of=([resnet34_resnet18]=resnet34 [wrn40_2_wrn16_1]=wrn40_2)
for pair in "${pairs[@]}"; do
  [ -n "${teacher_of[$pair]:-}" ] || { echo "unknown pair $pair: resnet34_resnet18 or wrn40_2_wrn16_1" >&2; exit 2; }
done
mkdir -p "$OUT" "$T"
source benchmarks/runs.sh  # a run stopped by the command's time limit still leaves its curve in $OUT
read -ra extra <<< "${OVERRIDES:-}"
common=(data=cifar10_jpeg "data.root=$data" progress=false "${extra[@]}")
trained=()
for pair in "${pairs[@]}"; do
  t=${teacher_of[$pair]}
  [ -f "$T/$t/teacher.pt" ] && continue
  [ "$teacher_s" != 0 ] || { echo "no teacher at $T/$t/teacher.pt (TEACHER_S=0): give TEACHER_S > 0 to train one" >&2; exit 2; }
  python3 -m datafree train-teacher "${common[@]}" teacher="$t" "teacher.train.time_budget_s=$teacher_s" \
      "hydra.run.dir=$T/$t" > "$OUT/teacher_$t.log" 2>&1 &
  trained+=("$t")
done
wait  # only the teachers run yet: the curve copiers start below
for t in "${trained[@]}"; do
  tail -n 2 "$OUT/teacher_$t.log"
  python3 benchmarks/shard_checkpoint.py split "$T/$t/teacher.pt" "$OUT/teachers/$t" --max-mib 15 || true
done
[ "$student_s" != 0 ] || exit 0
for pair in "${pairs[@]}"; do
  [ "$student_s" != done ] || break
  budget=(); [ "$student_s" = full ] || budget=("trainer.time_budget_s=$student_s")
  rm -rf "/tmp/ship_runs/$pair"  # a new run each call (distill refuses a folder holding a saved state)
  start_run "/tmp/ship_runs/$pair/summary.csv" "$OUT/distill_${pair}_summary.csv" "$OUT/distill_$pair.log" \
      python3 -m datafree distill "${common[@]}" "experiment=cifar10_${pair}_fast" \
      "teacher.checkpoint=$T/${teacher_of[$pair]}/teacher.pt" "${budget[@]}" "hydra.run.dir=/tmp/ship_runs/$pair"
done
wait_runs
for pair in "${pairs[@]}"; do
  run=/tmp/ship_runs/$pair
  [ "$student_s" = done ] || { echo "== $pair"; tail -n 12 "$OUT/distill_$pair.log"; }
  [ "${SHIP:-1}" != 0 ] || continue
  run_finished "$OUT/distill_$pair.log" \
      || { echo "$pair: not shipped: no finished run (no final test accuracy in $OUT/distill_$pair.log)" >&2; continue; }
  benchmarks/ship.sh "$run" "$OUT/$pair" data=cifar10_jpeg "data.root=$data" "${extra[@]}" \
      > "$OUT/ship_$pair.log" 2>&1 || { tail -n 20 "$OUT/ship_$pair.log"; continue; }
  cat "$OUT/$pair/ship.md"
done
