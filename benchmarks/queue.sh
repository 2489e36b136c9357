#!/usr/bin/env bash
# A queue of 32-px zoo-pair runs, each alone on the GPU for BUDGET_S seconds, worked through over several commands on
# one held machine (the device tool's commands last 10 minutes at most; a 600-s run and its start do not fit one):
#   QUEUE="resnet34:mobilenetv2:1 wrn40_2:wrn40_1:1 ..." benchmarks/queue.sh DATA_DIR BUDGET_S COMMAND_S
# Each item is TEACHER:STUDENT:SEED, or TEACHER:STUDENT:SEED:BUDGET_S for a run whose budget is not the queue's
# (the headline pairs' own budgets, 600 and 300 s, in one queue). Every call continues the queue where the last call on this machine left it: the
# run it stopped is resumed (benchmarks/resumable_distill.sh: the pieces make one run, its budget counted over all of
# them), then the next items start, until COMMAND_S seconds from the call's start are nearly spent; the run going then
# is stopped with its state saved, for the next call. Give COMMAND_S as the command's own limit less a minute:
# a stopped run finishes its round and saves its state after the signal, and this script copies its results after
# that. The same environment as benchmarks/zoo_pairs.sh, which runs each piece (TEACHER_PIECES, TAG, RECIPE,
# DISTILL_OVERRIDES, OVERRIDES); AFTER_RUN="COMMAND" runs once after each run that ends, with RUN set to its folder
# (e.g. AFTER_RUN='python3 benchmarks/bn_recalibration.py $RUN'), its output into the run's log as RUN_after.log.
# The queue's state, every piece's log and every summary stay in /tmp/queue on the machine; each call packs them all
# into one file, $OUT/queue.tgz (the runs' logs joined piece after piece; the teachers' logs too), and prints the
# end-of-run table of the runs that ended. One file, because the device tool brings back at most 8 from $OUT: the
# call that trains teachers leaves their float16 pieces in $OUT/TEACHER beside it (4 files for a ResNet-34, 2 for a
# WRN-40-2, each piece under 16 MiB), to carry to a later session's queue with TEACHER_PIECES.
# A machine given back between calls loses its runs (the replay pool is too large to carry): start the queue again.
# TEACHER_S=N (N > 0) first trains, side by side, the teachers of the queue's unfinished runs that the machine lacks
# (benchmarks/train_teachers.sh: N seconds of training each, their float16 pieces into $OUT; not those TEACHER_PIECES
# holds), so that a fresh machine starts a queue with one line; the runs then share what is left of the call.
set -euo pipefail
data=$1; budget_s=$2; command_s=$3
[ -n "${QUEUE:-}" ] || { echo "set QUEUE=\"TEACHER:STUDENT:SEED ...\"" >&2; exit 2; }
start=$SECONDS; Q=${QUEUE_DIR:-/tmp/queue}; mkdir -p "$Q"
source benchmarks/runs.sh
# A piece shorter than this is not started: a resumed run spends about 20 s before its first round, and a new one
# up to a minute (teacher, test set, the generator's first round).
SHORTEST_S=${SHORTEST_S:-90}
# What a stopped piece needs after its signal: the round it is in, its state saved, its last evaluation.
STOPPING_S=${STOPPING_S:-30}
if [ "${TEACHER_S:-0}" != 0 ]; then
  teachers=${TEACHERS_DIR:-/tmp/teachers}; missing=()
  for item in $QUEUE; do
    IFS=: read -r teacher student seed _ <<< "$item"
    ! run_finished "$Q/${teacher}_${student}_s$seed${TAG:-}.log" || continue
    [ -f "$teachers/$teacher/teacher.pt" ] || [ -f "${TEACHER_PIECES:-/nonexistent}/$teacher/teacher.meta.pt" ] \
        || [ -f "${TEACHER_PIECES:-/nonexistent}/$teacher/teacher.meta.pt.xz" ] \
        || [[ " ${missing[*]} " == *" $teacher "* ]] || missing+=("$teacher")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "queue: training the teachers ${missing[*]} for ${TEACHER_S}s each, side by side"
    mkdir -p "${OUT:-.cache/queue}"
    OUT=${OUT:-.cache/queue} "${TRAIN_TEACHERS:-benchmarks/train_teachers.sh}" "$data" "$TEACHER_S" "${missing[@]}" \
        >> "$Q/teachers.log" 2>&1 || echo "queue: training the teachers failed (teachers.log says why)"
    # their logs go into queue.tgz: a file less for the tool to bring back
    if [ -f "${OUT:-.cache/queue}/teacher_logs.tgz" ]; then mv "${OUT:-.cache/queue}/teacher_logs.tgz" "$Q/"; fi
  fi
fi
ended=()
for item in $QUEUE; do
  IFS=: read -r teacher student seed own_budget_s <<< "$item"
  name="${teacher}_${student}_s$seed${TAG:-}"
  if run_finished "$Q/$name.log"; then ended+=("$name"); continue; fi
  if [ -f "$Q/$name.failed" ]; then continue; fi
  left=$((command_s - (SECONDS - start) - STOPPING_S))
  if [ "$left" -lt "$SHORTEST_S" ]; then echo "queue: ${left}s left in this call, $name waits for the next"; break; fi
  echo "queue: $name for up to ${left}s of this call"
  OUT="$Q" PIECE_S="$left" SEEDS="$seed" "${ZOO_PAIRS:-benchmarks/zoo_pairs.sh}" "$data" 0 "${own_budget_s:-$budget_s}" \
      "$teacher:$student" \
      >> "$Q/${name}_call.log" 2>&1 || true
  tail -n 3 "$Q/${name}_call.log"
  if run_finished "$Q/$name.log"; then
    ended+=("$name")
    if [ -n "${AFTER_RUN:-}" ]; then RUN="/tmp/zoo_runs/$name" bash -c "$AFTER_RUN" > "$Q/${name}_after.log" 2>&1 || true; fi
  elif tail -n 5 "$Q/$name.log" 2>/dev/null | grep -q "distill exit status 143"; then
    break  # stopped by this call's clock, its state saved: the next call resumes it
  else
    echo "queue: $name failed (its log, $name.log, says why); the next items go on" | tee "$Q/$name.failed"
  fi
done
out=${OUT:-.cache/queue}; mkdir -p "$out"; tar czf "$out/queue.tgz" -C "$Q" .
[ ${#ended[@]} -eq 0 ] || python3 benchmarks/end_table.py "$Q" "" "${ended[@]}"
