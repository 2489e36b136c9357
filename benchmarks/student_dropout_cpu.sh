#!/usr/bin/env bash
# The student's dropout, A/B on the 2-core machine (docs/benchmarks.md, "The student's dropout: an A/B on the CPU"):
# the grey 64-px three-class task of benchmarks/grey_shapes_cpu.sh (its ImageFolder and its torchvision ResNet-18
# teacher, trained here if OUT_DIR lacks them), experiment=fast into a torchvision MobileNetV3-Small (a Dropout(0.2)
# in its head) for BUDGET_S seconds (default 300), as built and with its dropout off (benchmarks/without_dropout.py),
# the two side by side so that they share the two cores alike; seeds SEEDS (default "0 1 2"). From the repository root:
#   benchmarks/student_dropout_cpu.sh [OUT_DIR]
set -uo pipefail
out=${1:-.cache/student_dropout_cpu}; budget=${BUDGET_S:-300}; mkdir -p "$out"
[ -d "$out/images" ] || python benchmarks/make_grey_shapes.py "$out/images"
[ -f "$out/teacher/teacher.pt" ] || python -m datafree train-teacher teacher=torchvision teacher.name=resnet18 \
    data=imagefolder "data.root=$out/images" data.batch_size=64 teacher.train.epochs=6 seed=0 progress=false \
    "hydra.run.dir=$out/teacher" > "$out/teacher.log" 2>&1
grep -h "test accuracy" "$out/teacher.log" | tail -n 1
args=(distill experiment=fast "teacher.checkpoint=$out/teacher/teacher.pt" data=imagefolder "data.root=$out/images"
      "trainer.time_budget_s=$budget" synthesizer.batch_size=32 trainer.batch_size=64 trainer.eval_every=10
      progress=false student=torchvision student.name=mobilenet_v3_small)
rows=()
for seed in ${SEEDS:-0 1 2}; do
  rm -rf "${out:?}/dropout_s$seed" "$out/no_dropout_s$seed"
  python -m datafree "${args[@]}" "seed=$seed" "hydra.run.dir=$out/dropout_s$seed" > "$out/dropout_s$seed.log" 2>&1 &
  python benchmarks/without_dropout.py "${args[@]}" "seed=$seed" "hydra.run.dir=$out/no_dropout_s$seed" \
      > "$out/no_dropout_s$seed.log" 2>&1 &
  wait
  for v in dropout no_dropout; do
    cp "$out/${v}_s$seed/summary.csv" "$out/${v}_s${seed}_summary.csv" 2>/dev/null
    grep -h "^student" "$out/${v}_s$seed.log" | tail -n 1; rows+=("${v}_s$seed")
  done
done
python benchmarks/end_table.py "$out" "" "${rows[@]}"
