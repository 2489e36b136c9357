# Sourced by the CPU demo sweeps (bash), which keep every run that finished and run the others:
#   unfinished OUT_DIR "SEEDS" VARIANT...
# prints "SEED VARIANT" for each seed and variant whose log, OUT_DIR/NAME_sSEED.log (NAME: the variant's first word),
# lacks the student's final line: a run never started, or stopped or failed before its end.
unfinished() {
  local out=$1 seeds=$2 seed variant; shift 2
  for seed in $seeds; do
    for variant in "$@"; do
      grep -qs "^student " "$out/${variant%% *}_s$seed.log" || echo "$seed $variant"
    done
  done
}
