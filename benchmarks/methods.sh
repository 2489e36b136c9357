#!/usr/bin/env bash
# Every method of the library on one pair at one wall-clock budget (GPU machine, repo root), for the
# accuracy-against-time plot of all methods (docs/benchmarks.md); logs, curves and samples come back in
# $OUT/methods_PAIR_BUDGETs.tar.gz:
#   benchmarks/methods.sh TEACHER_PIECES_DIR PAIR BUDGET_S [METHOD ...]    (no METHOD: all, one after another)
#   benchmarks/methods.sh .cache/dist/wrn40_2 wrn40_2_wrn16_1 120 fast dfq dfad   (what fits a 10-minute slot)
# PAIR: resnet34_resnet18 or wrn40_2_wrn16_1; each METHOD runs that pair's recipe, experiment=cifar10_PAIR_METHOD
# (deepinversion: experiment=cifar10_PAIR), seed 0, the budget replacing the recipe's own. Then, in the
# repository: `tar -xzf methods_PAIR_BUDGETs.tar.gz -C benchmarks/results/methods_BUDGET` and
# `bash benchmarks/plots.sh` draws assets/methods_PAIR_BUDGETs.png once every method's curve is there.
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: $0 TEACHER_PIECES_DIR PAIR BUDGET_S [METHOD ...]" >&2
  exit 2
fi
pieces=$1; pair=$2; budget=$3; shift 3
ORDER=(fast dfq dfad zskt dafl deepinversion)
case $pair in
  resnet34_resnet18|wrn40_2_wrn16_1) ;;
  *) echo "unknown pair '$pair': choose resnet34_resnet18 or wrn40_2_wrn16_1" >&2; exit 2 ;;
esac
methods=("$@")
[ ${#methods[@]} -eq 0 ] && methods=("${ORDER[@]}")
for method in "${methods[@]}"; do
  if [[ ! " ${ORDER[*]} " == *" $method "* ]]; then
    echo "unknown method '$method': choose from ${ORDER[*]}" >&2
    exit 2
  fi
done
# Each run leaves three files (log, curve, samples) and the machine returns at most 8 files per call, so
# the runs write to a scratch folder that comes back as one archive, refreshed after every run.
returned=$OUT
OUT=$(mktemp -d /tmp/methods.XXXXXX)
export OUT
for method in "${methods[@]}"; do
  experiment=cifar10_${pair}_${method}
  [ "$method" = deepinversion ] && experiment=cifar10_${pair}
  # The fast recipe evaluates every 250 rounds, which a short budget may not reach (ResNet-34 at 120 s: 174
  # rounds, one point on the plot); every 25 rounds draws a curve, at the price of a test pass each time
  # (all methods' wall times include their evaluations).
  resolution=()
  [ "$method" = fast ] && resolution=(trainer.eval_every=25)
  benchmarks/cifar10_distill.sh "methods_${pair}_${method}" "$pieces" experiment="$experiment" seed=0 \
      trainer.time_budget_s="$budget" "${resolution[@]}" || true  # a failed method gets its row in the table, the others still run
  tar -C "$OUT" -czf "$returned/methods_${pair}_${budget}s.tar.gz" .
done
python3 benchmarks/end_table.py "$OUT" "methods_${pair}_" "${methods[@]}"
