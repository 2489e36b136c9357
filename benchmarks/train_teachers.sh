#!/usr/bin/env bash
# The distillation benchmark teachers, trained side by side on one GPU (GPU machine, repo root):
#   benchmarks/train_teachers.sh DATA_DIR BUDGET_S [ARCH ...]      (default ARCH: resnet34 wrn40_2)
# Recipe: recipes/teacher/train/cifar.yaml (plain cross-entropy, 200 epochs, cosine), stopped by
# BUDGET_S seconds of training if it comes first (the schedule then follows the clock). Each teacher
# lands in /tmp/teachers/ARCH/teacher.pt; float16 pieces (benchmarks/shard_checkpoint.py) of each,
# and a tarball of the logs, go to $OUT. OVERRIDES go to every train-teacher (device=cpu for a dry run).
set -euo pipefail
data=$1; budget=$2; shift 2
archs=("$@"); [ ${#archs[@]} -gt 0 ] || archs=(resnet34 wrn40_2)
mkdir -p /tmp/teachers
read -ra extra <<< "${OVERRIDES:-}"
for arch in "${archs[@]}"; do
  python3 -m datafree train-teacher data=cifar10_jpeg data.root="$data" teacher="$arch" \
      teacher.train.time_budget_s="$budget" progress=false "${extra[@]}" hydra.run.dir="/tmp/teachers/$arch" \
      > "/tmp/teachers/$arch.log" 2>&1 &
done
wait
for arch in "${archs[@]}"; do  # one failed teacher must not lose the other
  tail -n 3 "/tmp/teachers/$arch.log"
  python3 benchmarks/shard_checkpoint.py split "/tmp/teachers/$arch/teacher.pt" "$OUT/$arch" --max-mib 15 || true
done
tar czf "$OUT/teacher_logs.tgz" -C /tmp/teachers $(for a in "${archs[@]}"; do echo "$a.log"; [ -f "/tmp/teachers/$a/summary.csv" ] && echo "$a/summary.csv"; done)
