#!/usr/bin/env bash
# The any-teacher recipe on 32-px zoo pairs beyond the two headline pairs (docs/benchmarks.md, "Any teacher, any
# student"), on one GPU, from the repository root:
#   benchmarks/zoo_pairs.sh DATA_DIR TEACHER_S STUDENT_S PAIR [PAIR ...]      PAIR = TEACHER:STUDENT (zoo names)
#   e.g. benchmarks/zoo_pairs.sh .cache/data 300 600 vgg11_bn:resnet18 resnet34:mobilenetv2 wrn40_2:wrn16_2
# 1. benchmarks/train_teachers.sh for each teacher the pairs name that /tmp/teachers/TEACHER/teacher.pt does not hold
#    yet (side by side, plain cross-entropy, TEACHER_S seconds each; float16 pieces of at most 15 MiB to $OUT/TEACHER,
#    to carry later: they come back as files, so leave them out of any tarball of $OUT, which would pass the
#    16 MiB a returned file may have); TEACHER_S=0 insists on the teachers being there. TEACHER_PIECES=DIR takes a
#    teacher from such pieces carried in DIR/TEACHER (joined back to float32) before training any; pieces may be
#    xz-compressed (PIECE.pt.xz: about a tenth smaller, so that a ResNet-34 and a WRN-40-2 fit in what a command
#    may carry beside the test set and the wheels).
# 2. distill each pair alone on the GPU, one after the other, with RECIPE (default experiment=fast, unchanged) for
#    STUDENT_S seconds, once per seed in SEEDS (default 0); summary.csv is copied to $OUT as the run goes, so a run cut
#    short by the machine still leaves its curve. SIDE_BY_SIDE=1 runs a pair's seeds at the same time on the one GPU
#    (three seeds in the time of one, each with about a third of the GPU: a harder test of the same budget; the docs
#    say so next to the figures). OVERRIDES go to every command (device=cpu for a dry run), DISTILL_OVERRIDES to
#    distill only. PIECE_S=N runs each run as a piece of one longer than a command may last
#    (benchmarks/resumable_distill.sh): stopped after N seconds with its state saved, and resumed by the same line in
#    the next call on the same held machine (STUDENT_S is the whole run's budget: a 600-s run and its start-up do not
#    fit one 600-s command; e.g. PIECE_S=330 twice).
#    TAG=_SUFFIX ends each run's name (its folder, log and summary): variants of one pair in one session, e.g.
#    TAG=_ema DISTILL_OVERRIDES=trainer.ema_decay=0.999, or TAG=_160s with another STUDENT_S.
# 3. the end-of-run table (benchmarks/end_table.py): accuracy at the end, never the best evaluation; a run stopped
#    before its end (by a command's limit) gets a row saying so, not a figure.
# A command's own limit must leave STUDENT_S + 100 s at least: on a cold H100 three ResNet-34 -> MobileNetV2 runs side
# by side started their budgets' clocks about 74 s after this script began (joining the teacher, loading the test
# set, building and compiling three runs at once), and each run's last evaluation and report come after its budget.
set -euo pipefail
data=$1; teacher_s=$2; student_s=$3; shift 3
[ $# -gt 0 ] || { echo "usage: $0 DATA_DIR TEACHER_S STUDENT_S TEACHER:STUDENT [...]" >&2; exit 2; }
OUT=${OUT:-.cache/zoo_pairs}; T=/tmp/teachers; RECIPE=${RECIPE:-experiment=fast}; SIDE_BY_SIDE=${SIDE_BY_SIDE:-0}
read -ra seeds <<< "${SEEDS:-0}"; read -ra extra <<< "${OVERRIDES:-}"; read -ra distill_extra <<< "${DISTILL_OVERRIDES:-}"
mkdir -p "$OUT"
source benchmarks/runs.sh
common=(data=cifar10_jpeg "data.root=$data" progress=false "${extra[@]}")
if [ -n "${TEACHER_PIECES:-}" ]; then for pair in "$@"; do t=${pair%%:*}
  src="$TEACHER_PIECES/$t"
  [ ! -f "$T/$t/teacher.pt" ] && { [ -f "$src/teacher.meta.pt" ] || [ -f "$src/teacher.meta.pt.xz" ]; } || continue
  mkdir -p "$T/$t"; python3 benchmarks/shard_checkpoint.py join "$src" "$T/$t/teacher.pt"
  echo "teacher $t: joined from the pieces in $TEACHER_PIECES/$t"; done; fi
missing=(); for pair in "$@"; do t=${pair%%:*}
  [ -f "$T/$t/teacher.pt" ] || [[ " ${missing[*]} " == *" $t "* ]] || missing+=("$t"); done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$teacher_s" != 0 ] || { echo "no teacher at $T/{${missing[*]}}/teacher.pt to reuse (TEACHER_S=0)" >&2; exit 2; }
  OUT="$OUT" benchmarks/train_teachers.sh "$data" "$teacher_s" "${missing[@]}"
  for t in "${missing[@]}"; do [ -f "$T/$t/teacher.pt" ] || { echo "teacher $t failed" >&2; exit 1; }; done
fi
rows=()
for pair in "$@"; do
  t=${pair%%:*}; s=${pair#*:}; names=()
  for seed in "${seeds[@]}"; do
    name="${t}_${s}_s$seed${TAG:-}"; run="/tmp/zoo_runs/$name"; rows+=("$name"); names+=("$name")
    args=("${common[@]}" "$RECIPE" "teacher.checkpoint=$T/$t/teacher.pt" "student=$s" "trainer.time_budget_s=$student_s"
          "seed=$seed" "${distill_extra[@]}")
    if [ -n "${PIECE_S:-}" ]; then  # one piece of a longer run: started here, or resumed where a former call left it
      start_run "$run/summary.csv" "$OUT/${name}_summary.csv" /dev/null \
          benchmarks/resumable_distill.sh "$run" "$PIECE_S" "$OUT/$name.log" "${args[@]}"
    else
      rm -rf "$run"  # a new run each call (distill refuses a folder holding a saved state)
      start_run "$run/summary.csv" "$OUT/${name}_summary.csv" "$OUT/$name.log" \
          python3 -m datafree distill "${args[@]}" "hydra.run.dir=$run"
    fi
  done
  wait_runs
  for name in "${names[@]}"; do  # a failed run shows its last lines instead
    grep -h "test accuracy" "$OUT/$name.log" | tail -n 2 | grep . || tail -n 20 "$OUT/$name.log"
  done
done
python3 benchmarks/end_table.py "$OUT" "" "${rows[@]}"
