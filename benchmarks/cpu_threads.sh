#!/usr/bin/env bash
# The CPU demo (datafree distill) with 1 and 2 torch threads, alone and beside one busy process, on a
# 2-core machine: what cpu_threads=auto (half the usable cores) is chosen by. Writes results.txt in OUT.
#   benchmarks/cpu_threads.sh [OUT]       (datafree installed in the active environment)
set -u
out=${1:-/tmp/cpu_threads}
mkdir -p "$out"
for load in 0 1; do
 for t in 1 2; do
  if [ $load = 1 ]; then python -c "while True: pass" & busy=$!; sleep 2; fi
  start=$(date +%s.%N)
  datafree distill cpu_threads=$t hydra.run.dir=$out/run_${load}_${t} progress=false > $out/out_${load}_${t}.txt 2>&1
  end=$(date +%s.%N)
  echo "load=$load cpu_threads=$t wall=$(echo "$end - $start" | bc) | $(grep -E '^(teacher|student|baseline)' $out/out_${load}_${t}.txt | tr '\n' '|')" >> $out/results.txt
  if [ $load = 1 ]; then kill $busy; fi
 done
done
