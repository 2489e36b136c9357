#!/usr/bin/env bash
# The any-teacher recipe on 32-px zoo pairs beyond the two headline pairs (docs/benchmarks.md, "Any teacher, any
# student"), on one GPU, from the repository root:
#   benchmarks/zoo_pairs.sh DATA_DIR TEACHER_S STUDENT_S PAIR [PAIR ...]      PAIR = TEACHER:STUDENT (zoo names)
#   e.g. benchmarks/zoo_pairs.sh .cache/data 300 600 vgg11_bn:resnet18 resnet34:mobilenetv2 wrn40_2:wrn16_2
# 1. train-teacher each teacher the pairs name, side by side (recipes/teacher/train/cifar.yaml: plain cross-entropy,
#    200 epochs, stopped after TEACHER_S seconds of training; the schedule follows the clock), into
#    /tmp/zoo_teachers/TEACHER; skipped where a teacher.pt is there (TEACHER_S=0 insists on that). With PIECES=1
#    float16 pieces of each new teacher (benchmarks/shard_checkpoint.py) go to $OUT/pieces_TEACHER, to carry later.
# 2. distill each pair alone on the GPU, one after the other, with RECIPE (default experiment=fast, unchanged) for
#    STUDENT_S seconds, once per seed in SEEDS (default 0); summary.csv is copied to $OUT as the run goes, so a run cut
#    short by the machine still leaves its curve. OVERRIDES go to every command (device=cpu for a dry run),
#    DISTILL_OVERRIDES to distill only.
# 3. the end-of-run table (benchmarks/end_table.py): accuracy at the end, never the best evaluation.
set -euo pipefail
data=$1; teacher_s=$2; student_s=$3; shift 3
[ $# -gt 0 ] || { echo "usage: $0 DATA_DIR TEACHER_S STUDENT_S TEACHER:STUDENT [...]" >&2; exit 2; }
OUT=${OUT:-.cache/zoo_pairs}; T=${TEACHER_DIR:-/tmp/zoo_teachers}; RECIPE=${RECIPE:-experiment=fast}
read -ra seeds <<< "${SEEDS:-0}"; read -ra extra <<< "${OVERRIDES:-}"; read -ra distill_extra <<< "${DISTILL_OVERRIDES:-}"
mkdir -p "$OUT" "$T"
common=(data=cifar10_jpeg "data.root=$data" progress=false "${extra[@]}")
teachers=(); for pair in "$@"; do t=${pair%%:*}; [[ " ${teachers[*]} " == *" $t "* ]] || teachers+=("$t"); done
for t in "${teachers[@]}"; do
  [ -f "$T/$t/teacher.pt" ] && continue
  [ "$teacher_s" != 0 ] || { echo "no teacher at $T/$t/teacher.pt to reuse (TEACHER_S=0)" >&2; exit 2; }
  python3 -m datafree train-teacher "${common[@]}" "teacher=$t" "teacher.train.time_budget_s=$teacher_s" \
      "hydra.run.dir=$T/$t" > "$OUT/teacher_$t.log" 2>&1 &
done
wait || true
for t in "${teachers[@]}"; do
  [ -f "$T/$t/teacher.pt" ] || { echo "teacher $t failed:"; tail -n 20 "$OUT/teacher_$t.log"; exit 1; }
  grep -h "test accuracy" "$OUT/teacher_$t.log" 2>/dev/null | tail -n 1 || echo "teacher $t: $T/$t/teacher.pt, trained earlier"
  if [ "${PIECES:-0}" = 1 ] && [ ! -d "$OUT/pieces_$t" ]; then
    python3 benchmarks/shard_checkpoint.py split "$T/$t/teacher.pt" "$OUT/pieces_$t" --max-mib 15
  fi
done
rows=()
for pair in "$@"; do
  t=${pair%%:*}; s=${pair#*:}
  for seed in "${seeds[@]}"; do
    name="${t}_${s}_s$seed"; run="/tmp/zoo_runs/$name"; rows+=("$name")
    rm -rf "$run"  # a new run each call (distill refuses a folder holding a saved state)
    (while sleep 15; do cp "$run/summary.csv" "$OUT/${name}_summary.csv" 2>/dev/null || true; done) &
    copier=$!
    python3 -m datafree distill "${common[@]}" "$RECIPE" "teacher.checkpoint=$T/$t/teacher.pt" "student=$s" \
        "trainer.time_budget_s=$student_s" "seed=$seed" "${distill_extra[@]}" "hydra.run.dir=$run" \
        > "$OUT/$name.log" 2>&1 || tail -n 20 "$OUT/$name.log"
    kill "$copier" 2>/dev/null || true
    cp "$run/summary.csv" "$OUT/${name}_summary.csv" 2>/dev/null || true
    grep -h "test accuracy" "$OUT/$name.log" | tail -n 2 || true
  done
done
python3 benchmarks/end_table.py "$OUT" "" "${rows[@]}"
