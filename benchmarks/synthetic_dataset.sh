#!/usr/bin/env bash
# Synthetic data set on CIFAR-10, on the GPU machine (repo root, after `source benchmarks/device_env.sh`):
#   benchmarks/synthetic_dataset.sh DATA_DIR TEACHER [STAGE ...]
# DATA_DIR holds train.tar.gz and test.tar.gz (the CIFAR-10 JPEG copy); TEACHER is a ResNet-34
# teacher.pt or a folder of its float16 pieces (benchmarks/shard_checkpoint.py). Stages, in order
# (default: all four; later stages read what earlier ones left in .cache/runs/synthetic):
#   online   distillation ResNet-34 -> ResNet-18 (EXPERIMENT, default the fast synthesizer's recipe) for
#            ONLINE_S seconds: the online result, and the trained generator (and student) the export starts from
#   export   N samples (default 50,000) from that generator, labelled by the teacher (DRAW=synthesize: a few
#            generator steps per batch, as the fast synthesizer needs; DRAW=sample for generator methods such
#            as EXPERIMENT=cifar10_resnet34_resnet18_dfq), written as shards with a manifest; then
#            `datafree inspect` (checksums, grid per class, histogram)
#   offline  a fresh ResNet-18 trained from the stored set alone (no teacher), with the online run's
#            trainer settings and OFFLINE_S seconds
#   audit    the set against the 50,000 real training images (pixels and teacher features, mirrored
#            too), the 10,000 test images as the baseline
# Each stage appends a row to $OUT/synthetic_dataset.csv (stage, wall_s, samples, MB, samples_per_s,
# student_accuracy, note) and copies its log and pictures to $OUT. OVERRIDES (space-separated hydra
# overrides) go to the distill and synthesize commands, DEVICE (default auto) to all of them: a CPU
# smoke run of this script uses e.g. DEVICE=cpu OVERRIDES="teacher.arch=microcnn student=microcnn ...".
set -euo pipefail
data=$(realpath "$1"); teacher=$2; shift 2
stages=("$@"); [ ${#stages[@]} -gt 0 ] || stages=(online export offline audit)
ONLINE_S=${ONLINE_S:-180}; OFFLINE_S=${OFFLINE_S:-180}; N=${N:-50000}; DEVICE=${DEVICE:-auto}
CLASS_COUNTS=${CLASS_COUNTS:-balanced}  # as_drawn: keep the generator's own class mix
EXPERIMENT=${EXPERIMENT:-cifar10_resnet34_resnet18_fast}; DRAW=${DRAW:-synthesize}
read -r -a overrides <<< "${OVERRIDES:-}"
runs=.cache/runs/synthetic
mkdir -p "$runs" "$OUT"
if [ -d "$teacher" ]; then
  python3 benchmarks/shard_checkpoint.py join "$teacher" "$runs/teacher.pt"
  teacher="$runs/teacher.pt"
fi
experiment=("experiment=$EXPERIMENT" "teacher.checkpoint=$teacher" progress=false device="$DEVICE"
            ${overrides[@]+"${overrides[@]}"})
csv="$OUT/synthetic_dataset.csv"
[ -f "$csv" ] || echo "stage,wall_s,samples,MB,samples_per_s,student_accuracy,note" > "$csv"

row() {  # stage wall_s: the rest is read from what the stage wrote
  python3 - "$1" "$2" "$runs" >> "$csv" <<'PY'
import csv, json, sys
from pathlib import Path
stage, wall, runs = sys.argv[1], float(sys.argv[2]), Path(sys.argv[3])
def last_accuracy(run):
    rows = [r for r in csv.DictReader(open(run / "summary.csv")) if r.get("student_accuracy")]
    return rows[-1]["student_accuracy"] if rows else ""
samples = mb = rate = accuracy = note = ""
if stage == "online":
    accuracy, note = last_accuracy(runs / "online"), "accuracy at the end of the run"
elif stage == "export":
    m = json.load(open(runs / "set" / "manifest.json"))
    samples, mb = m["count"], round(sum(f["bytes"] for f in m["files"].values()) / 1e6, 1)
    rate = round(m["count"] / m["wall_time_s"], 1)
    note = f"synthesis {m['wall_time_s']:.1f}s in the job, {m['drawn']} images drawn, {len(m['shards'])} shards"
elif stage == "offline":
    accuracy, note = last_accuracy(runs / "offline"), "from the stored set only"
elif stage == "audit":
    r = json.load(open(runs / "audit" / "audit.json"))
    samples = r["synthetic"]["count"]
    f = r["flagged"]
    note = (f"search {r['search_time_s']}s; flagged pixel {f['pixel']['count']} feature "
            f"{f.get('feature', {}).get('count', '-')}; pixel median synth "
            f"{r['distances']['pixel']['synthetic']['q0.5']} vs held-out {r['distances']['pixel']['baseline']['q0.5']}")
print(",".join(str(v) for v in (stage, round(wall, 1), samples, mb, rate, accuracy, f'"{note}"')))
PY
}

timed() {  # stage command...: runs it, logs to $OUT/stage.log, appends the CSV row
  local stage=$1; shift
  local start end
  start=$(date +%s.%N)
  "$@" 2>&1 | grep -v -i warning | tee "$OUT/$stage.log"
  end=$(date +%s.%N)
  row "$stage" "$(awk "BEGIN { print $end - $start }")"
}

for stage in "${stages[@]}"; do
  case $stage in
    online)
      rm -rf "$runs/online"
      timed online python3 -m datafree distill "${experiment[@]}" data=cifar10_jpeg data.root="$data" trainer.time_budget_s="$ONLINE_S" \
          hydra.run.dir="$runs/online"
      cp "$runs/online/summary.csv" "$OUT/online_summary.csv" ;;
    export)
      rm -rf "$runs/set"
      timed export python3 -m datafree synthesize "${experiment[@]}" from_run="$runs/online" draw="$DRAW" batch_size=1000 \
          n="$N" class_counts="$CLASS_COUNTS" out="$runs/set" hydra.run.dir="$runs/export_log"
      python3 -m datafree inspect "$runs/set" --out "$OUT/inspect" | tee "$OUT/inspect.log"
      cp "$runs/set/manifest.json" "$OUT/manifest.json" ;;
    offline)
      rm -rf "$runs/offline"
      timed offline python3 -m datafree distill "${experiment[@]}" data=synthetic data.path="$runs/set" \
          "data.test={_target_: datafree.data.build_dataset, kind: tarball, path: $data/test.tar.gz}" \
          trainer.time_budget_s="$OFFLINE_S" hydra.run.dir="$runs/offline"
      cp "$runs/offline/summary.csv" "$OUT/offline_summary.csv" ;;
    audit)
      rm -rf "$runs/audit"
      timed audit python3 -m datafree audit synthetic="$runs/set" data=cifar10_jpeg data.root="$data" \
          teacher.checkpoint="$teacher" progress=false device="$DEVICE" hydra.run.dir="$runs/audit"
      cp "$runs/audit/audit.json" "$runs/audit/distances.png" "$runs/audit/closest_pairs.png" "$OUT/" ;;
    *) echo "unknown stage $stage: choose online, export, offline, audit" >&2; exit 2 ;;
  esac
done
cat "$csv"
