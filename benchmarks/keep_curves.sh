# Sourced by the benchmark scripts (bash): each run's summary.csv is copied to $OUT while the run goes, so a
# run cut short (the command's time limit, a machine taken back) still leaves its curve there.
#   keep_curve RUN_DIR/summary.csv OUT/NAME_summary.csv   a copy every 15 s from now on
#   stop_curves                                           the copiers stopped and a last copy made
# stop_curves also runs when the script exits. On SIGTERM or SIGINT (timeout's SIGTERM reaches the whole process
# group) the script first waits for its runs: they got the same signal, finish their round and save their state,
# and write their last evaluation meanwhile. A copier left running would hold the caller's pipe open.
_curve_src=(); _curve_dst=(); _curve_pids=()
keep_curve() {
  _curve_src+=("$1"); _curve_dst+=("$2")
  (while sleep 15; do cp "$1" "$2" 2>/dev/null || true; done) &
  _curve_pids+=($!)
}
stop_curves() {
  local i
  for i in "${_curve_pids[@]}"; do kill "$i" 2>/dev/null || true; done
  _curve_pids=()
  for i in "${!_curve_src[@]}"; do cp "${_curve_src[$i]}" "${_curve_dst[$i]}" 2>/dev/null || true; done
}
_curves_on_signal() {
  local i
  for i in "${_curve_pids[@]}"; do kill "$i" 2>/dev/null || true; done
  _curve_pids=()
  wait  # the runs left (bash runs this only once a run in the foreground has ended)
  exit 143
}
trap stop_curves EXIT
trap _curves_on_signal TERM INT
