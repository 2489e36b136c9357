# Sourced by the benchmark scripts (bash): runs started in the background, one after the other or side by side, each
# run's summary.csv copied to $OUT while it goes, so that a run cut short (the command's time limit, a machine taken
# back) still leaves its curve there.
#   start_run RUN_DIR/summary.csv OUT/NAME_summary.csv LOG COMMAND ...
#                   COMMAND's output to LOG, its curve copied every 15 s; waits for it unless SIDE_BY_SIDE=1
#   wait_runs       waits for every run started, then stops the copiers with a last copy
#   keep_curve SRC DST, stop_curves: the copiers alone
#   run_finished LOG  true when distill's LOG ends a run (its final "student ...: test accuracy" line), false for a
#                   run stopped or failed before its end
# stop_curves also runs when the script exits. On SIGTERM or SIGINT (timeout's SIGTERM reaches the whole process
# group) the script first waits for its runs: they got the same signal, finish their round and save their state,
# and write their last evaluation meanwhile. The copiers keep off the caller's output: a pipe held open by one (or by
# the sleep a killed copier leaves behind) would keep whoever reads it waiting.
_curve_src=(); _curve_dst=(); _curve_pids=(); _run_pids=()
keep_curve() {
  _curve_src+=("$1"); _curve_dst+=("$2")
  (while sleep 15; do cp "$1" "$2" 2>/dev/null || true; done) > /dev/null 2>&1 &  # its sleep outlives a kill
  _curve_pids+=($!)
}
stop_curves() {
  local i
  for i in "${_curve_pids[@]}"; do kill "$i" 2>/dev/null || true; done
  _curve_pids=()
  for i in "${!_curve_src[@]}"; do cp "${_curve_src[$i]}" "${_curve_dst[$i]}" 2>/dev/null || true; done
}
start_run() {
  keep_curve "$1" "$2"
  local log=$3; shift 3
  "$@" > "$log" 2>&1 &
  _run_pids+=($!)
  [ "${SIDE_BY_SIDE:-0}" = 1 ] || wait "${_run_pids[-1]}" || true
}
wait_runs() {
  [ ${#_run_pids[@]} -eq 0 ] || wait "${_run_pids[@]}" || true  # not a bare wait: the copiers run until stop_curves
  _run_pids=()
  stop_curves
}
run_finished() { grep -q "^student .*test accuracy" "$1" 2>/dev/null; }
_runs_on_signal() {
  local i
  for i in "${_curve_pids[@]}"; do kill "$i" 2>/dev/null || true; done
  _curve_pids=()
  wait  # the runs left (bash runs this only once a run in the foreground has ended)
  exit 143
}
trap stop_curves EXIT
trap _runs_on_signal TERM INT
