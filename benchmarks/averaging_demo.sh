#!/usr/bin/env bash
# trainer.ema_decay on the CPU demo (docs/benchmarks.md, "Each pair alone for 10 minutes"): experiment=demo_fast,
# 600 rounds instead of 150 (the demo's student still rising at 150), evaluated every 25 rounds, seeds 0-2, with the
# running average of the weights (decay 0.99: about the last 100 of the 3,000 student steps). One run per seed gives
# both curves: the average is what the run evaluates and delivers, and each evaluation also measures the weights
# themselves, which train exactly as without the average. From the repository root, on the 2-core machine about
# 2.5 minutes a run, two at a time:
#   benchmarks/averaging_demo.sh [OUT_DIR]
# ROUNDS and DECAY change the run's length and the decay: ROUNDS=150 DECAY=0.999 is the demo's own length with
# experiment=fast's decay (750 student steps: does an average of about the last 1,000 steps, warmed up as timm's,
# lag a student still climbing steeply at the end?).
set -euo pipefail
out=${1:-.cache/averaging_demo}; mkdir -p "$out"
for seed in 0 1 2; do
  python -m datafree distill experiment=demo_fast seed=$seed trainer.rounds=${ROUNDS:-600} trainer.eval_every=25 \
      trainer.ema_decay=${DECAY:-0.99} noise_baseline=false progress=false "hydra.run.dir=$out/s$seed" > "$out/s$seed.log" 2>&1 &
  [ "$seed" = 1 ] && wait
done
wait
python - "$out" <<'PY'
import csv, statistics, sys
from pathlib import Path
print("| seed | average, end | weights, end | sd of the last 8 evaluations: average | weights |")
print("| --- | ---: | ---: | ---: | ---: |")
ends = []
for run in sorted(Path(sys.argv[1]).glob("s*/summary.csv")):
    rows = list(csv.DictReader(run.open()))
    avg = [float(r["student_accuracy"]) for r in rows]
    raw = [float(r["unaveraged_accuracy"]) for r in rows]
    ends.append((avg[-1], raw[-1]))
    print(f"| {run.parent.name[1:]} | {100 * avg[-1]:.2f}% | {100 * raw[-1]:.2f}% | "
          f"{100 * statistics.stdev(avg[-8:]):.2f} | {100 * statistics.stdev(raw[-8:]):.2f} |")
if len(ends) > 1:
    a, r = zip(*ends)
    print(f"| mean ± sd | {100 * statistics.mean(a):.2f}% ± {100 * statistics.stdev(a):.2f} | "
          f"{100 * statistics.mean(r):.2f}% ± {100 * statistics.stdev(r):.2f} | | |")
PY
