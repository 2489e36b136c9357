#!/usr/bin/env bash
# The BatchNorm distance on the CPU demo's pair (docs/benchmarks.md, "The BatchNorm distance across teachers"):
# experiment=demo_fast (shapes at 16 px, a tinycnn teacher trained in each run, a microcnn student) with the
# recipe's raw distance (bn_weight 10) and with experiment=fast's relative one (bn_weight 400), seeds 0-2: a new
# teacher per seed, none of them the one either weight was chosen on. Two runs at a time, one thread each, from
# the repository root on the 2-core machine:
#   benchmarks/bn_distance_demo.sh [OUT_DIR]      (default .cache/bn_distance_demo)
set -euo pipefail
OUT=${1:-.cache/bn_distance_demo}; mkdir -p "$OUT"
declare -A setting=([raw]="synthesizer.bn_distance=raw synthesizer.bn_weight=10"
                    [relative]="synthesizer.bn_distance=relative synthesizer.bn_weight=400")
for seed in 0 1 2; do
  for distance in raw relative; do
    read -ra args <<< "${setting[$distance]}"
    rm -rf "$OUT/${distance}_s$seed"
    python3 -m datafree distill experiment=demo_fast noise_baseline=false progress=false cpu_threads=1 \
        "seed=$seed" "${args[@]}" "hydra.run.dir=$OUT/${distance}_s$seed" > "$OUT/${distance}_s$seed.log" 2>&1 &
  done
  wait
done
for distance in raw relative; do
  for seed in 0 1 2; do
    printf '%s seed %s: ' "$distance" "$seed"
    grep -h "^teacher \|^student " "$OUT/${distance}_s$seed.log" | tr '\n' ' '; echo
    grep -h "synth/bn" "$OUT/${distance}_s$seed.log" | tail -n 1 | sed 's/.*| //'
  done
done
