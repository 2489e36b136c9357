#!/usr/bin/env bash
# One GPU, the same distillation twice: the plain command and the same command under torchrun with one process
# (issue 11's one-GPU torchrun check), on the GPU machine (repo root, after `source benchmarks/device_env.sh`):
#   benchmarks/torchrun_overhead.sh EXPERIMENT SECONDS [OVERRIDE ...]
#   e.g. benchmarks/torchrun_overhead.sh cifar10_resnet34_resnet18_fast 180 data.root=DATA_DIR teacher.checkpoint=T.pt
# Both runs use the same recipe, overrides, seed and time budget. With one process torchrun sets WORLD_SIZE=1 and
# datafree runs its one-process code (no process group, no DDP, CUDA graphs kept), so the accuracies must agree
# within run-to-run noise and the difference in wall time is torchrun's own start-up. Writes
# $OUT/torchrun_overhead.csv: launcher, wall_s (the whole command), student steps done in the budget, steps per
# second of the run's own clock, final student accuracy.
set -euo pipefail
experiment=$1; budget=$2; shift 2
OUT=${OUT:-benchmarks/results}; runs=.cache/runs/torchrun_overhead
mkdir -p "$OUT" "$runs"
args=("experiment=$experiment" "trainer.time_budget_s=$budget" progress=false seed=0 "$@")
csv="$OUT/torchrun_overhead.csv"
echo "launcher,wall_s,student_steps,steps_per_s,student_accuracy" > "$csv"
for launcher in plain torchrun; do
  rm -rf "${runs:?}/$launcher"
  start=$(date +%s.%N)
  if [ "$launcher" = plain ]; then
    python3 -m datafree distill "${args[@]}" hydra.run.dir="$runs/$launcher" 2>&1 | tee "$OUT/torchrun_overhead_$launcher.log"
  else
    python3 -m torch.distributed.run --standalone --nproc_per_node=1 -m datafree distill "${args[@]}" \
        hydra.run.dir="$runs/$launcher" 2>&1 | tee "$OUT/torchrun_overhead_$launcher.log"
  fi
  end=$(date +%s.%N)
  python3 - "$launcher" "$(awk "BEGIN { print $end - $start }")" "$runs/$launcher/summary.csv" >> "$csv" <<'PY'
import csv, sys
launcher, wall, summary = sys.argv[1], float(sys.argv[2]), sys.argv[3]
last = list(csv.DictReader(open(summary)))[-1]
steps = int(last["step"])
print(f"{launcher},{wall:.1f},{steps},{steps / float(last['time_s']):.1f},{last['student_accuracy']}")
PY
done
cat "$csv"
