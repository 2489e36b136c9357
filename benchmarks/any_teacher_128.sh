#!/usr/bin/env bash
# CIFAR-10 at 128 px beyond the zoo (docs/benchmarks.md, "Any teacher, any student"), on one GPU, from the
# repository root:
#   benchmarks/any_teacher_128.sh DATA_DIR TEACHER_S STUDENT_S [STUDENT ...]
# 1. train-teacher: a torchvision ResNet-50 trained from scratch at data.image_size=128 (the resized-crop
#    augmentation train-teacher picks above 64 px), plain cross-entropy, stopped after TEACHER_S seconds of
#    training (the cosine schedule follows the clock); skipped when /tmp/t128/teacher.pt exists (TEACHER_S=0
#    insists on that: it stops when there is none).
# 2. distill experiment=fast (unchanged) into each torchvision STUDENT (default: resnet18 mobilenet_v3_large),
#    STUDENT_S seconds each, evaluated every 10 rounds for the curve. SIDE_BY_SIDE=1 runs the students at the
#    same time on the one GPU (each then has about half of it; the docs say so next to the figures). STUDENT_S=0
#    trains the teacher only (for benchmarks/resumable_distill.sh, a student longer than one command).
# Logs and summary.csv files go to $OUT (default .cache/any_teacher_128). SIZE, TEACHER and OVERRIDES change the
# pair for a dry run (SIZE=64 TEACHER=resnet18 OVERRIDES=device=cpu ... mobilenet_v3_small on the CPU);
# DISTILL_OVERRIDES and TAG run a variant of the students (TAG=_s32 DISTILL_OVERRIDES=synthesizer.synthesis_size=32);
# DATAFREE names the command line that distils (default python3 -m datafree; TAG=_nodrop
# DATAFREE="python3 benchmarks/without_dropout.py" runs the students with their dropout off).
# PIECE_S=N runs each student as a piece of a run longer than one command may last (benchmarks/resumable_distill.sh):
# stopped after N seconds with its state saved, and resumed by the same line in the next call on the same held
# machine (the log in $OUT is appended to; STUDENT_S is the whole run's budget, e.g. 1200 in pieces of 540).
# SHIP=1 runs benchmarks/ship.sh (deploy with int8, then report; REPORT=0: deploy only, about half the time) on each
# finished student, into $OUT/ship_STUDENT$TAG, while the run folder and its replay pool (int8's synthetic calibration
# images) are still on the machine; real calibration for comparison reads DATA_DIR/train.tar.gz (a few hundred images
# per class are enough: it takes 512).
set -euo pipefail
data=$1; teacher_s=$2; student_s=$3; shift 3
students=("$@"); [ ${#students[@]} -gt 0 ] || students=(resnet18 mobilenet_v3_large)
OUT=${OUT:-.cache/any_teacher_128}; SIDE_BY_SIDE=${SIDE_BY_SIDE:-0}; T=${TEACHER_DIR:-/tmp/t128}
SIZE=${SIZE:-128}; TEACHER=${TEACHER:-resnet50}; read -ra extra <<< "${OVERRIDES:-}"  # e.g. OVERRIDES=device=cpu
read -ra distill_extra <<< "${DISTILL_OVERRIDES:-}"  # distill only, e.g. synthesizer.synthesis_size=32
read -ra datafree <<< "${DATAFREE:-python3 -m datafree}"; export DATAFREE  # resumable_distill.sh reads it too
TAG=${TAG:-}  # a suffix for the students' run folders and logs (variants side by side)
mkdir -p "$OUT"
source benchmarks/runs.sh  # a student stopped by the command's time limit still leaves its curve in $OUT
common=(data=cifar10_jpeg "data.root=$data" "data.image_size=$SIZE" progress=false "${extra[@]}")
if [ ! -f "$T/teacher.pt" ]; then
  # TEACHER_S=0 means "reuse the teacher there": on a machine handed back since, that teacher is gone.
  [ "$teacher_s" != 0 ] || { echo "no teacher at $T/teacher.pt to reuse (TEACHER_S=0): put one there" \
      "(TEACHER_DIR=... names another folder) or give TEACHER_S > 0 to train one" >&2; exit 2; }
  start=$(date +%s)
  python3 -m datafree train-teacher "${common[@]}" teacher=torchvision "teacher.name=$TEACHER" \
      "teacher.train.time_budget_s=$teacher_s" "hydra.run.dir=$T" > "$OUT/teacher.log" 2>&1 \
      || { tail -n 20 "$OUT/teacher.log"; exit 1; }
  echo "train-teacher wall time: $(( $(date +%s) - start )) s" | tee -a "$OUT/teacher.log"
  cp "$T/summary.csv" "$OUT/teacher_summary.csv" 2>/dev/null || true
fi
# A teacher trained by an earlier call (another OUT) has no log here: say which one is used instead of stopping.
if [ -f "$OUT/teacher.log" ]; then tail -n 3 "$OUT/teacher.log"; else echo "teacher: $T/teacher.pt, trained earlier"; fi
[ "$student_s" != 0 ] || exit 0
for s in "${students[@]}"; do
  run="/tmp/s128_$s$TAG"; curve=("$run/summary.csv" "$OUT/${s}${TAG}_summary.csv")
  args=("${common[@]}" experiment=fast "teacher.checkpoint=$T/teacher.pt" student=torchvision "student.name=$s"
        "trainer.time_budget_s=$student_s" trainer.eval_every=10 "${distill_extra[@]}")
  if [ -n "${PIECE_S:-}" ]; then  # one piece of a longer run: started here, or resumed where a former call left it
    start_run "${curve[@]}" /dev/null benchmarks/resumable_distill.sh "$run" "$PIECE_S" "$OUT/$s$TAG.log" "${args[@]}"
  else
    rm -rf "$run"  # a new run each call (distill refuses a folder holding a saved state)
    start_run "${curve[@]}" "$OUT/$s$TAG.log" "${datafree[@]}" distill "${args[@]}" "hydra.run.dir=$run"
  fi
done
wait_runs
for s in "${students[@]}"; do
  echo "== $s$TAG"; tail -n 8 "$OUT/$s$TAG.log"
  [ "${SHIP:-0}" = 1 ] || continue
  run_finished "$OUT/$s$TAG.log" \
      || { echo "$s$TAG has not finished (no final test accuracy in its log): not shipped"; continue; }
  # after every student has finished: ship.sh's CPU latencies need the CPU to themselves
  benchmarks/ship.sh "/tmp/s128_$s$TAG" "$OUT/ship_$s$TAG" data=cifar10_jpeg "data.root=$data" \
      "data.image_size=$SIZE" "${extra[@]}" > "$OUT/ship_$s$TAG.log" 2>&1 \
      && cat "$OUT/ship_$s$TAG/ship.md" || tail -n 20 "$OUT/ship_$s$TAG.log"
done
