#!/usr/bin/env bash
# Multi-GPU scaling of distillation and synthesis on one machine with NPROC GPUs (repo root, after
# `source benchmarks/device_env.sh`):
#   benchmarks/scaling.sh TEACHER NPROC BUDGET_S [RUN ...]
# TEACHER: a teacher.pt, or a folder of its float16 pieces (benchmarks/shard_checkpoint.py). RUN (default all,
# in this order; split them over calls where one call's time is short):
#   single     the recipe as one plain process on one GPU: the reference
#   global     torchrun --nproc_per_node=NPROC, global_batch=true: the same global batches, split among the GPUs
#   per_rank   torchrun --nproc_per_node=NPROC, per-process batches: NPROC x the images per round and per step
#   synthesize `datafree synthesize` of N images (default 100,000) in one process, then under torchrun
# Every distillation uses the same recipe (EXPERIMENT, default cifar10_resnet34_resnet18_fast), seed and budget,
# and evaluates every 25 rounds so that the time to a target accuracy can be read off its curve. Each run appends a
# row to $OUT/scaling.csv; logs and curves go into $OUT/scaling_logs.tar.gz, refreshed after every run (the GPU
# machine returns at most 8 files a call); the GPUs and NCCL version to $OUT/scaling_machine.txt.
# `python3 benchmarks/scaling_table.py CSV ...`
# turns the rows of one or several calls into the table with the ratios to the single-process run.
# Environment: DATA (data.root of CIFAR-10 JPEG, default .cache/dist/data), N, DEVICE (default auto), OVERRIDES
# (space-separated hydra overrides for every command). A CPU smoke run: DEVICE=cpu EXPERIMENT=demo_fast with a
# demo teacher (gloo stands in for NCCL).
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: $0 TEACHER NPROC BUDGET_S [single|global|per_rank|synthesize ...]" >&2
  exit 2
fi
teacher=$1; nproc=$2; budget=$3; shift 3
runs_wanted=("$@"); [ ${#runs_wanted[@]} -gt 0 ] || runs_wanted=(single global per_rank synthesize)
for run in "${runs_wanted[@]}"; do
  case $run in single|global|per_rank|synthesize) ;; *)
    echo "unknown run '$run': choose from single, global, per_rank, synthesize" >&2; exit 2 ;;
  esac
done
EXPERIMENT=${EXPERIMENT:-cifar10_resnet34_resnet18_fast}; N=${N:-100000}; DEVICE=${DEVICE:-auto}
DATA=${DATA:-.cache/dist/data}
read -r -a overrides <<< "${OVERRIDES:-}"
OUT=${OUT:-benchmarks/results}
work=/tmp/scaling; logs=$work/logs
mkdir -p "$work" "$logs" "$OUT"
if [ -d "$teacher" ]; then
  python3 benchmarks/shard_checkpoint.py join "$teacher" "$work/teacher.pt"
  teacher=$work/teacher.pt
fi
data=()
[[ $EXPERIMENT == cifar10_* ]] && data=(data=cifar10_jpeg "data.root=$DATA")
common=("experiment=$EXPERIMENT" "teacher.checkpoint=$teacher" "${data[@]}" progress=false seed=0 "device=$DEVICE"
        ${overrides[@]+"${overrides[@]}"})
csv="$OUT/scaling.csv"
[ -f "$csv" ] || echo "run,processes,global_batch,wall_s,images,student_steps,student_batch,run_s,student_accuracy,teacher_accuracy,time_to_90pct_s,synthesized_per_s" > "$csv"
{ nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  python3 -c 'import torch; print("torch", torch.__version__, "NCCL", ".".join(map(str, torch.cuda.nccl.version())) if torch.cuda.is_available() else "(no CUDA)")'
} | tee "$OUT/scaling_machine.txt"

launch() {  # PROCESSES COMMAND ARGS...: one plain process, or torchrun
  local processes=$1; shift
  if [ "$processes" = 1 ]; then
    python3 -m datafree "$@"
  else
    python3 -m torch.distributed.run --standalone --nproc_per_node="$processes" -m datafree "$@"
  fi
}

row() {  # NAME PROCESSES GLOBAL_BATCH WALL_S RUN_DIR [SET_DIR]
  python3 - "$@" >> "$csv" <<'PY'
import csv, json, sys
from pathlib import Path
from omegaconf import OmegaConf
name, processes, global_batch, wall, run = sys.argv[1:6]
run = Path(run)
cells = dict(run=name, processes=processes, global_batch=global_batch, wall_s=f"{float(wall):.1f}")
if name == "synthesize":
    m = json.load(open(Path(sys.argv[6]) / "manifest.json"))
    cells.update(images=m["count"], run_s=round(m["wall_time_s"], 1),
                 synthesized_per_s=round(m["count"] / m["wall_time_s"], 1))
else:
    rows = [r for r in csv.DictReader(open(run / "summary.csv")) if r.get("student_accuracy")]
    last = rows[-1]
    trainer = OmegaConf.load(run / ".hydra" / "config.yaml").trainer
    # the student's global batch: per process unless global_batch=true divided it among the processes
    batch = int(trainer["batch_size"]) * (1 if global_batch == "true" else int(processes))
    reached = [r for r in rows if float(r["student_accuracy"]) >= 0.9 * float(r["teacher_accuracy"])]
    cells.update(images=last["images"], student_steps=last["step"], student_batch=batch, run_s=last["time_s"],
                 student_accuracy=last["student_accuracy"], teacher_accuracy=last["teacher_accuracy"],
                 time_to_90pct_s=reached[0]["time_s"] if reached else "")
columns = ("run,processes,global_batch,wall_s,images,student_steps,student_batch,run_s,student_accuracy,"
           "teacher_accuracy,time_to_90pct_s,synthesized_per_s").split(",")
print(",".join(str(cells.get(c, "")) for c in columns))
PY
}

distill() {  # NAME PROCESSES GLOBAL_BATCH
  local name=$1 processes=$2 global_batch=$3 start end
  rm -rf "${work:?}/$name"
  start=$(date +%s.%N)
  launch "$processes" distill "${common[@]}" "global_batch=$global_batch" trainer.time_budget_s="$budget" \
      trainer.eval_every=25 hydra.run.dir="$work/$name" 2>&1 | grep -v -i warning | tee "$logs/scaling_$name.log"
  end=$(date +%s.%N)
  cp "$work/$name/summary.csv" "$logs/scaling_${name}_summary.csv"
  row "$name" "$processes" "$global_batch" "$(awk "BEGIN { print $end - $start }")" "$work/$name"
}

synthesize() {  # PROCESSES
  local processes=$1 name=synthesize_$1 start end
  rm -rf "${work:?}/$name" "${work:?}/${name}_set"
  start=$(date +%s.%N)
  launch "$processes" synthesize "${common[@]}" n="$N" out="$work/${name}_set" hydra.run.dir="$work/$name" 2>&1 \
      | grep -v -i warning | tee "$logs/scaling_$name.log"
  end=$(date +%s.%N)
  row synthesize "$processes" false "$(awk "BEGIN { print $end - $start }")" "$work/$name" "$work/${name}_set"
}

for run in "${runs_wanted[@]}"; do
  case $run in
    single) distill single 1 false ;;
    global) distill global "$nproc" true ;;
    per_rank) distill per_rank "$nproc" false ;;
    synthesize) synthesize 1; synthesize "$nproc" ;;
  esac
  tar -C "$logs" -czf "$OUT/scaling_logs.tar.gz" .
done
cat "$csv"
