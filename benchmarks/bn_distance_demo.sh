#!/usr/bin/env bash
# The BatchNorm distance on the CPU demo's pair (docs/benchmarks.md, "The BatchNorm distance across teachers"):
# experiment=demo_fast (shapes at 16 px, a tinycnn teacher trained in each run, a microcnn student), seeds 0-2 (a
# new teacher per seed, none of them the one any weight was chosen on), for each DISTANCE:WEIGHT (default raw:10,
# the recipe's, and relative:400, experiment=fast's). Two runs at a time, one thread each, from the repository root
# on the 2-core machine:
#   benchmarks/bn_distance_demo.sh [OUT_DIR [DISTANCE:WEIGHT ...]]      (default .cache/bn_distance_demo)
set -euo pipefail
OUT=${1:-.cache/bn_distance_demo}; mkdir -p "$OUT"; shift || true
settings=("$@"); [ ${#settings[@]} -gt 0 ] || settings=(raw:10 relative:400)
runs=()
for seed in 0 1 2; do
  for spec in "${settings[@]}"; do runs+=("$spec:$seed"); done
done
for ((i = 0; i < ${#runs[@]}; i += 2)); do
  for run in "${runs[@]:i:2}"; do
    IFS=: read -r distance weight seed <<< "$run"
    name=${distance}_${weight}_s$seed; rm -rf "${OUT:?}/$name"
    python3 -m datafree distill experiment=demo_fast noise_baseline=false progress=false cpu_threads=1 "seed=$seed" \
        "synthesizer.bn_distance=$distance" "synthesizer.bn_weight=$weight" "hydra.run.dir=$OUT/$name" \
        > "$OUT/$name.log" 2>&1 &
  done
  wait
done
for spec in "${settings[@]}"; do
  for seed in 0 1 2; do
    name=${spec/:/_}_s$seed
    printf '%s seed %s: ' "$spec" "$seed"
    grep -h "^teacher \|^student " "$OUT/$name.log" | tr '\n' ' '; echo
    grep -h "synth/bn" "$OUT/$name.log" | tail -n 1 | sed 's/.*| //'
  done
done
