#!/usr/bin/env bash
# The average's BatchNorm statistics, averaged with its weights or re-estimated on the replay pool
# (trainer.ema_bn_batches; datafree/distill/averaging.py), on one GPU, from the repository root after
# `source benchmarks/device_env.sh`:
#   benchmarks/average_statistics.sh DATA_DIR TEACHER_S ROUNDS [STUDENT]     (DATA_DIR: CIFAR-10's two tarballs)
# 1. train-teacher: a zoo ResNet-18 for TEACHER_S seconds (plain cross-entropy): a teacher the recipe never met
#    (skipped where /tmp/average_statistics/teacher/teacher.pt is already there);
# 2. experiment=fast from it into STUDENT (default mobilenetv2), seed 0, twice side by side: with the average's
#    statistics averaged (trainer.ema_bn_batches=0, as runs were before) and re-estimated (the default, 50 batches).
#    ROUNDS fixes the length (no time budget) so that both make the same steps: the re-estimate draws from its own
#    generator, so the weights themselves train alike (bit for bit on the CPU; on a GPU up to its nondeterminism);
# 3. benchmarks/bn_recalibration.py on the averaged run: its weights and average as saved, and re-estimated over
#    10, 25, 50 and 200 batches (how many the estimate needs).
# Logs, summaries and the table go to $OUT (default .cache/average_statistics); the end-of-run table last.
# OVERRIDES go to every command, DISTILL_OVERRIDES to the two runs (default trainer.eval_every=10: a curve),
# BN_ARGS to bn_recalibration.py (a dry run on the CPU, with a small student:
#   OVERRIDES=device=cpu BN_ARGS="--device cpu --batch 16" ... DATA_DIR 5 1 wrn16_1).
set -euo pipefail
data=$1; teacher_s=$2; rounds=$3; student=${4:-mobilenetv2}
OUT=${OUT:-.cache/average_statistics}; mkdir -p "$OUT"
read -ra extra <<< "${OVERRIDES:-}"; read -ra distill_extra <<< "${DISTILL_OVERRIDES:-trainer.eval_every=10}"
read -ra bn_extra <<< "${BN_ARGS:-}"  # e.g. BN_ARGS="--device cpu --batch 16"
source benchmarks/runs.sh
common=(data=cifar10_jpeg "data.root=$data" progress=false "${extra[@]}")
T=/tmp/average_statistics
if [ -f "$T/teacher/teacher.pt" ]; then  # kept from an earlier call on this machine
  echo "teacher: $T/teacher/teacher.pt, kept"
else
  python3 -m datafree train-teacher "${common[@]}" teacher=resnet18 teacher.train.time_budget_s="$teacher_s" \
      hydra.run.dir="$T/teacher" > "$OUT/teacher.log" 2>&1
  grep -h "test accuracy" "$OUT/teacher.log" | tail -n 1
fi
names=()
for count in 0 50; do
  name="${student}_bn$count"; names+=("$name"); rm -rf "${T:?}/$name"
  SIDE_BY_SIDE=1 start_run "$T/$name/summary.csv" "$OUT/${name}_summary.csv" "$OUT/$name.log" \
      python3 -m datafree distill "${common[@]}" experiment=fast "teacher.checkpoint=$T/teacher/teacher.pt" \
      "student=$student" seed=0 trainer.time_budget_s=null "trainer.rounds=$rounds" "trainer.ema_bn_batches=$count" \
      "${distill_extra[@]}" "hydra.run.dir=$T/$name"
done
wait_runs
python3 benchmarks/bn_recalibration.py "$T/${student}_bn0" --batches 10 25 50 200 "${bn_extra[@]}" \
    | tee "$OUT/bn_recalibration.txt"
python3 benchmarks/end_table.py "$OUT" "" "${names[@]}"
