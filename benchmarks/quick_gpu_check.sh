#!/usr/bin/env bash
# What a few minutes of a GPU machine can check (docs/benchmarks.md, "A few minutes of an H100"), from the repository
# root after `source benchmarks/device_env.sh`:
#   benchmarks/quick_gpu_check.sh DATA_DIR          (DATA_DIR holds CIFAR-10's train.tar.gz and test.tar.gz)
# 1. the GPU tests (python -m pytest -m gpu);
# 2. benchmarks/size_a_run.py for ResNet-34 -> MobileNetV2 at 32 px, batch 256, with and without cudnn.benchmark
#    (where that student's long set-up goes);
# 3. train-teacher: a zoo ResNet-18 for 45 s (plain cross-entropy, recipes/teacher/train/cifar.yaml);
# 4. experiment=fast, unchanged, from that teacher into a ResNet-18 for 60 s (seeds 0-2) and a MobileNetV2 for 120 s
#    (seed 0): a teacher the recipe was never run on, end-of-run accuracy (benchmarks/end_table.py).
# About 9 minutes on an H100 (242 s and 313 s in the two device commands it was first run as); logs and summaries go to $OUT (default .cache/quick_gpu_check).
# CHECKS=0 leaves out steps 1 and 2; RUNS="NAME:STUDENT:SECONDS:SEED ..." replaces step 4's runs (e.g. more seeds of
# the MobileNetV2: RUNS="mobilenetv2_s1:mobilenetv2:120:1 mobilenetv2_s2:mobilenetv2:120:2").
set -euo pipefail
data=$1; OUT=${OUT:-.cache/quick_gpu_check}; mkdir -p "$OUT"
if [ "${CHECKS:-1}" != 0 ]; then
  python3 -m pytest -m gpu -o addopts="" -p no:cacheprovider -q --durations=12 tests > "$OUT/gpu_tests.txt" 2>&1 || true
  tail -n 1 "$OUT/gpu_tests.txt"
  for flag in "" --no-cudnn-benchmark; do
    python3 benchmarks/size_a_run.py --teacher resnet34 --student mobilenetv2 --size 32 --classes 10 --batch 256 $flag
  done > "$OUT/size_mnv2.txt" 2>&1
  cat "$OUT/size_mnv2.txt"
fi
common=(data=cifar10_jpeg "data.root=$data" progress=false)
python3 -m datafree train-teacher "${common[@]}" teacher=resnet18 teacher.train.time_budget_s=45 \
    hydra.run.dir=/tmp/quick_teacher > "$OUT/teacher.log" 2>&1
cp /tmp/quick_teacher/summary.csv "$OUT/teacher_summary.csv"
run() {  # NAME STUDENT SECONDS SEED
  rm -rf "/tmp/quick_$1"
  python3 -m datafree distill "${common[@]}" experiment=fast teacher.checkpoint=/tmp/quick_teacher/teacher.pt \
      "student=$2" "trainer.time_budget_s=$3" "seed=$4" "hydra.run.dir=/tmp/quick_$1" > "$OUT/$1.log" 2>&1
  cp "/tmp/quick_$1/summary.csv" "$OUT/$1_summary.csv"
}
names=()
for item in ${RUNS:-resnet18_s0:resnet18:60:0 resnet18_s1:resnet18:60:1 resnet18_s2:resnet18:60:2 mobilenetv2_s0:mobilenetv2:120:0}; do
  IFS=: read -r name student seconds seed <<< "$item"
  run "$name" "$student" "$seconds" "$seed"; names+=("$name")
done
grep -h "test accuracy" "$OUT/teacher.log" | tail -n 1
python3 benchmarks/end_table.py "$OUT" "" "${names[@]}"
