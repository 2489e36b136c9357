#!/usr/bin/env bash
# A user's kind of task on a machine without a GPU (docs/benchmarks.md, "Grey, three classes, 64 px, on the CPU"):
# a grey 64-px ImageFolder of three drawn shapes (make_grey_shapes.py: 400 training and 100 test images a class), a
# torchvision ResNet-18 teacher trained on it by train-teacher (plain cross-entropy, 6 epochs), distilled with
# experiment=fast, its batches made small for the CPU (synthesizer.batch_size=32, trainer.batch_size=64: the recipe's
# own 256 and 512 are sized for a GPU, and at them one round took 213 s here), into a torchvision MobileNetV3-Small
# and a timm EfficientNet-B0, BUDGET_S seconds each (default 300), seeds 0-2; then each student on noise
# (synthesizer=noise, seed 0): what the same budget gives without the teacher's inversion. On the 2-core machine,
# from the repository root:
#   benchmarks/grey_shapes_cpu.sh [OUT_DIR]
# The end-of-run table: python benchmarks/end_table.py OUT_DIR "" RUN ... (accuracy at the end, never the best).
# A part of it: STUDENTS="mobilenet_v3_small" (of mobilenet_v3_small, efficientnet_b0), SEEDS="0" (default 0 1 2),
# NOISE=0 (no noise runs), DISTILL_OVERRIDES="..." (to every distill, e.g. trainer.ema_bn_batches=0), TAG=_SUFFIX
# (ends each run's name).
set -euo pipefail
out=${1:-.cache/grey_shapes_cpu}; budget=${BUDGET_S:-300}; mkdir -p "$out"
[ -d "$out/images" ] || python benchmarks/make_grey_shapes.py "$out/images"
if [ ! -f "$out/teacher/teacher.pt" ]; then
  python -m datafree train-teacher teacher=torchvision teacher.name=resnet18 data=imagefolder "data.root=$out/images" \
      data.batch_size=64 teacher.train.epochs=6 seed=0 progress=false "hydra.run.dir=$out/teacher" > "$out/teacher.log" 2>&1
fi
grep -h "test accuracy" "$out/teacher.log" | tail -n 1
small=(synthesizer.batch_size=32 trainer.batch_size=64 trainer.eval_every=10)
read -ra distill_extra <<< "${DISTILL_OVERRIDES:-}"; read -ra seeds <<< "${SEEDS:-0 1 2}"
distill() {  # NAME overrides...
  local name=$1; shift
  rm -rf "${out:?}/$name"
  python -m datafree distill experiment=fast "teacher.checkpoint=$out/teacher/teacher.pt" data=imagefolder \
      "data.root=$out/images" "trainer.time_budget_s=$budget" "${small[@]}" progress=false "${distill_extra[@]}" "$@" \
      "hydra.run.dir=$out/$name" > "$out/$name.log" 2>&1 || true
  cp "$out/$name/summary.csv" "$out/${name}_summary.csv" 2>/dev/null || true
  grep -h "test accuracy" "$out/$name.log" | tail -n 1
}
students=("mobilenet_v3_small:student=torchvision student.name=mobilenet_v3_small"
          "efficientnet_b0:student=timm student.name=efficientnet_b0")
rows=()
for entry in "${students[@]}"; do
  s=${entry%%:*}; read -ra student <<< "${entry#*:}"
  [[ " ${STUDENTS:-$s} " == *" $s "* ]] || continue
  for seed in "${seeds[@]}"; do
    distill "${s}_s$seed${TAG:-}" "${student[@]}" "seed=$seed"; rows+=("${s}_s$seed${TAG:-}")
  done
  [ "${NOISE:-1}" = 0 ] || { distill "${s}_noise${TAG:-}" "${student[@]}" synthesizer=noise seed=0; rows+=("${s}_noise${TAG:-}"); }
done
python benchmarks/end_table.py "$out" "" "${rows[@]}"
