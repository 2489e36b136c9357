#!/usr/bin/env bash
# Does the fast recipe's BatchNorm term hold on teachers it was not tuned on, raw or relative
# (docs/benchmarks.md, "The BatchNorm distance across teachers")? On one GPU, from the repository root:
#   benchmarks/bn_distance.sh DATA_DIR teachers TEACHER_S [TEACHER ...]
#   benchmarks/bn_distance.sh DATA_DIR students STUDENT_S PAIR:DISTANCE:WEIGHT [...]
# teachers: side by side under /tmp/bnd (each skipped when its teacher.pt is there), plain cross-entropy, out of
#   resnet34 and wrn40_2 (CIFAR zoo, 32 px, TEACHER_S seconds of training each), resnet34_weak (a ResNet-34 trained
#   for half of that: the 90-s one of the shipping pass gave a student at chance) and resnet50 (a torchvision
#   ResNet-50 at 128 px, BIG_S seconds, default 150, as in any_teacher_128.sh; train it alone: beside others it
#   gets too little of the GPU); default all four. Then benchmarks/bn_scale.py on every teacher there.
# students: the pairs side by side, STUDENT_S seconds each, their recipes unchanged but for synthesizer.bn_distance
#   (raw or relative) and synthesizer.bn_weight. Pairs: resnet34_resnet18 and wrn40_2_wrn16_1 (their fast
#   experiments), resnet34_weak_resnet18 (the same experiment, the weaker teacher), resnet50_resnet18_128
#   (experiment=fast into a torchvision ResNet-18, generator at 32 px, as in any_teacher_128.sh).
# Logs and summary.csv files go to $OUT (default .cache/bn_distance). OVERRIDES go to every command (a dry run:
# OVERRIDES=device=cpu SIZE=64 BIG_S=3 benchmarks/bn_distance.sh DATA teachers 6).
set -euo pipefail
data=$1; phase=$2; shift 2
OUT=${OUT:-.cache/bn_distance}; T=/tmp/bnd; SIZE=${SIZE:-128}
read -ra extra <<< "${OVERRIDES:-}"
mkdir -p "$OUT" "$T"
common=(data=cifar10_jpeg "data.root=$data" progress=false "${extra[@]}")
big=("data.image_size=$SIZE" teacher=torchvision teacher.name=resnet50)
if [ "$phase" = teachers ]; then
  teacher_s=$1; shift
  names=("$@"); [ ${#names[@]} -gt 0 ] || names=(resnet34 wrn40_2 resnet34_weak resnet50)
  declare -A budget=([resnet34]=$teacher_s [wrn40_2]=$teacher_s [resnet34_weak]=$(( teacher_s / 2 )) [resnet50]=${BIG_S:-150})
  for t in "${names[@]}"; do
    [ -f "$T/$t/teacher.pt" ] && continue
    case $t in resnet50) what=("${big[@]}");; resnet34_weak) what=(teacher=resnet34);; *) what=("teacher=$t");; esac
    python3 -m datafree train-teacher "${common[@]}" "${what[@]}" "teacher.train.time_budget_s=${budget[$t]}" \
        "hydra.run.dir=$T/$t" > "$OUT/teacher_$t.log" 2>&1 &
  done
  wait
  for t in "${names[@]}"; do grep -h "^teacher " "$OUT/teacher_$t.log" || tail -n 5 "$OUT/teacher_$t.log"; done
  python3 benchmarks/bn_scale.py "$T"/*/teacher.pt "$data/test.tar.gz" | tee "$OUT/bn_scale.txt"
  exit 0
fi
student_s=$1; shift
declare -A args=(
  [resnet34_resnet18]="experiment=cifar10_resnet34_resnet18_fast teacher.checkpoint=$T/resnet34/teacher.pt"
  [wrn40_2_wrn16_1]="experiment=cifar10_wrn40_2_wrn16_1_fast teacher.checkpoint=$T/wrn40_2/teacher.pt"
  [resnet34_weak_resnet18]="experiment=cifar10_resnet34_resnet18_fast teacher.checkpoint=$T/resnet34_weak/teacher.pt"
  [resnet50_resnet18_128]="experiment=fast teacher.checkpoint=$T/resnet50/teacher.pt data.image_size=$SIZE student=torchvision student.name=resnet18 synthesizer.synthesis_size=32 trainer.eval_every=10")
runs=()
for spec in "$@"; do
  IFS=: read -r pair distance weight <<< "$spec"
  [ -n "${args[$pair]:-}" ] || { echo "unknown pair $pair: one of ${!args[*]}" >&2; exit 2; }
  read -ra pair_args <<< "${args[$pair]}"
  run=${pair}_${distance}_$weight; runs+=("$run")
  rm -rf "/tmp/bnd_runs/$run"  # a new run each time (a folder left by an earlier call would be refused: resume=)
  python3 -m datafree distill "${common[@]}" "${pair_args[@]}" "synthesizer.bn_distance=$distance" \
      "synthesizer.bn_weight=$weight" "trainer.time_budget_s=$student_s" "hydra.run.dir=/tmp/bnd_runs/$run" \
      > "$OUT/$run.log" 2>&1 &
done
echo "${#runs[@]} students side by side, $student_s s each"
wait || true
for run in "${runs[@]}"; do
  echo "== $run"; grep "synth/bn" "$OUT/$run.log" | tail -n 1 || true
  grep -E "^(student|teacher) " "$OUT/$run.log" || tail -n 5 "$OUT/$run.log"
  cp "/tmp/bnd_runs/$run/summary.csv" "$OUT/${run}_summary.csv" 2>/dev/null || true
done
