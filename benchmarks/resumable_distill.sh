#!/usr/bin/env bash
# A distill run longer than one command may last (10 minutes on the GPU machine lent here), in pieces:
#   benchmarks/resumable_distill.sh RUN_DIR STOP_AFTER_S LOG [distill overrides ...]
# Starts the run in RUN_DIR, or resumes it when RUN_DIR holds a started run (its .hydra record: the state may be
# the run's own state_last.pt or, stopped while it trained its teacher, teacher/state_last.pt). After STOP_AFTER_S
# seconds it gets SIGTERM: it finishes its round, saves its full state and exits (143), and the next command
# continues it with the same line. trainer.time_budget_s counts over all pieces (the loop's clock includes the time
# before a resume, and the learning-rate schedule follows it), so the pieces make one run, not several. The log is
# appended to, one piece after another. Every piece must run on the same machine while it is held (RUN_DIR under
# /tmp there): the replay pool makes the state too large to carry between machines. DATAFREE names the command line
# that runs datafree (default: python3 -m datafree; e.g. python3 benchmarks/without_dropout.py for an A/B).
set -uo pipefail
run=$1; stop_after=$2; log=$3; shift 3
read -ra datafree <<< "${DATAFREE:-python3 -m datafree}"
if [ -d "$run/.hydra" ]; then
  args=("$@" "resume=$run"); echo "== resumed in $run" >> "$log"
else
  rm -rf "$run"; args=("$@" "hydra.run.dir=$run")
fi
timeout --preserve-status -s TERM -k 120 "$stop_after" "${datafree[@]}" distill "${args[@]}" >> "$log" 2>&1
code=$?
echo "distill exit status $code (0: finished; 143: stopped after ${stop_after}s, its state saved)" | tee -a "$log"
tail -n 4 "$log"
