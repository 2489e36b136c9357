#!/usr/bin/env bash
# docs/shipping.md's MobileNetV3 case and docs/benchmarks.md's "int8 layers kept in float": on the CPU, from the
# repository root, with datafree installed:
#   benchmarks/int8_sensitive_layers.sh [RESULTS_DIR] [TEACHER_S]
# 1. train-teacher a torchvision MobileNetV3-Small on the shapes demo data for TEACHER_S seconds (600; skipped when
#    .cache/int8_sensitive/teacher/teacher.pt exists);
# 2. synthesize 512 DeepInversion images from it alone (the int8 calibration set: no real image);
# 3. deploy it with int8 four times: every layer int8 (int8_float_layers=0), the search with a 97% target, the
#    default (98% agreement with float on the synthetic check images), and 99%. Each prints its int8 line;
#    deploy.json keeps the search.
# RESULTS_DIR (default benchmarks/results/ship/int8_sensitive_layers) gets the logs and the deploy.json files.
set -euo pipefail
results=${1:-benchmarks/results/ship/int8_sensitive_layers}; teacher_s=${2:-600}
work=.cache/int8_sensitive; mkdir -p "$work" "$results"
if [ ! -f "$work/teacher/teacher.pt" ]; then
  datafree train-teacher teacher=torchvision teacher.name=mobilenet_v3_small "teacher.train.time_budget_s=$teacher_s" \
      progress=false "hydra.run.dir=$work/teacher" > "$results/teacher.log" 2>&1
fi
tail -n 1 "$work/teacher/train-teacher.log"
rm -rf "$work/synthetic"
datafree synthesize "teacher.checkpoint=$work/teacher/teacher.pt" n=512 class_counts=as_drawn "out=$work/synthetic" \
    progress=false > "$results/synthesize.log" 2>&1
tail -n 3 "$results/synthesize.log" | head -n 1
for variant in "all_int8 int8_float_layers=0" "target_97 int8_target_agreement=0.97" "target_98" \
    "target_99 int8_target_agreement=0.99"; do
  read -r name overrides <<< "$variant"
  rm -rf "$work/deploy_$name"
  # shellcheck disable=SC2086  # overrides: zero or one word
  datafree deploy "checkpoint=$work/teacher/teacher.pt" "synthetic=$work/synthetic" data=shapes int8=true \
      $overrides "hydra.run.dir=$work/deploy_$name" 2>&1 | grep -v -i "warn" | tee "$results/deploy_$name.txt"
  cp "$work/deploy_$name/deploy.json" "$results/deploy_$name.json"
done
