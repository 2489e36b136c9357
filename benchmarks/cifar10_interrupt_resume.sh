#!/usr/bin/env bash
# A CIFAR-10 distillation on the GPU machine that is killed with SIGTERM and resumed, logs under $OUT.
#   benchmarks/cifar10_interrupt_resume.sh NAME TEACHER_PIECES_DIR KILL_AFTER_S [hydra overrides...]
# The first run gets SIGTERM after KILL_AFTER_S seconds (it saves its full state and exits with 143);
# the same command with resume=RUN_DIR then finishes it. Teacher and test set as in cifar10_distill.sh.
set -uo pipefail
name=$1; pieces=$2; kill_after=$3; shift 3
run=".cache/runs/$name"
rm -rf "$run"
python3 benchmarks/shard_checkpoint.py join "$pieces" ".cache/runs/teacher_$name.pt" || exit 1
common=(data=cifar10_jpeg data.root=.cache/dev/data teacher.checkpoint=".cache/runs/teacher_$name.pt" progress=false "$@")
python3 -m datafree distill "${common[@]}" hydra.run.dir="$run" > "$OUT/${name}_first.log" 2>&1 &
pid=$!
sleep "$kill_after"
kill -TERM "$pid"
wait "$pid"; echo "first run exit status: $?" | tee -a "$OUT/${name}_first.log"
python3 -m datafree distill "${common[@]}" resume="$run" 2>&1 | grep -v -i warning | tee "$OUT/${name}_resumed.log"
cp "$run/summary.csv" "$OUT/${name}_summary.csv"
ls -l "$run" >> "$OUT/${name}_resumed.log"
