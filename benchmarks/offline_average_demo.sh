#!/usr/bin/env bash
# The average's BatchNorm statistics on a stored synthetic set, on the 2-core machine (docs/benchmarks.md, "On a
# stored set: the re-estimate offline"): a shapes teacher (train-teacher's default), N synthetic samples of it
# (synthesize's default DeepInversion), then students from the set alone (data=synthetic_shapes, the demo trainer),
# seeds 0-2, with the running average of their weights (DECAY, default 0.99: about the last 100 of the 600 student
# steps), its statistics averaged (trainer.ema_bn_batches=0) and re-estimated on the stored samples (50, the
# default). The weights themselves train the same in both (a CPU test holds it), so each pair differs only in the
# statistics the average is evaluated with. From the repository root:
#   benchmarks/offline_average_demo.sh [OUT_DIR]
# The teacher and the set are kept in OUT_DIR and reused by a second call (for other DECAY or ROUNDS).
set -euo pipefail
out=${1:-.cache/offline_average}; mkdir -p "$out"
[ -f "$out/teacher/teacher.pt" ] || python -m datafree train-teacher progress=false "hydra.run.dir=$out/teacher" \
    > "$out/teacher.log" 2>&1
[ -f "$out/set.done" ] || { python -m datafree synthesize "teacher.checkpoint=$out/teacher/teacher.pt" n="${N:-2000}" \
    "out=$out/set" progress=false "hydra.run.dir=$out/synthesize" > "$out/synthesize.log" 2>&1 && touch "$out/set.done"; }
tag=${TAG:-}
for seed in 0 1 2; do
  for bn in 0 50; do  # the pair side by side, one process a core
    python -m datafree distill data=synthetic_shapes "data.path=$out/set" seed=$seed trainer.ema_decay="${DECAY:-0.99}" \
        trainer.ema_bn_batches=$bn ${ROUNDS:+trainer.rounds=$ROUNDS} noise_baseline=false progress=false \
        "hydra.run.dir=$out/s${seed}_bn$bn$tag" > "$out/s${seed}_bn$bn$tag.log" 2>&1 &
  done
  wait
done
python - "$out" "$tag" <<'PY'
import csv, statistics, sys
from pathlib import Path
out, tag = Path(sys.argv[1]), sys.argv[2]
print("| seed | the average, statistics averaged | re-estimated | the weights (either run) |")
print("| --- | ---: | ---: | ---: |")
ends = []
for seed in (0, 1, 2):
    last = {bn: list(csv.DictReader((out / f"s{seed}_bn{bn}{tag}" / "summary.csv").open()))[-1] for bn in (0, 50)}
    row = (float(last[0]["student_accuracy"]), float(last[50]["student_accuracy"]), float(last[50]["unaveraged_accuracy"]))
    assert last[0]["unaveraged_accuracy"] == last[50]["unaveraged_accuracy"], "the weights should train alike"
    ends.append(row)
    print(f"| {seed} | " + " | ".join(f"{100 * v:.2f}%" for v in row) + " |")
cols = list(zip(*ends))
print("| mean ± sd | " + " | ".join(f"{100 * statistics.mean(c):.2f}% ± {100 * statistics.stdev(c):.2f}" for c in cols) + " |")
PY
