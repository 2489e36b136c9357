#!/usr/bin/env bash
# A real teacher without BatchNorm on one GPU (docs/benchmarks.md, "A teacher without BatchNorm"), from the
# repository root:
#   benchmarks/no_batchnorm_gpu.sh DATA_DIR TEACHER_S STUDENT_S
# CIFAR-10 (DATA_DIR holding train.tar.gz and test.tar.gz) is split once, per class, into two halves of its
# training images:
#   - the teacher's half, an ImageFolder with its classes ($W/half/train, the test images in $W/half/test): what the
#     teacher's owner keeps;
#   - the other half, written without classes ($W/same_kind): unlabelled images of the same kind that the student's
#     maker may hold (none of them is one the teacher was trained on);
#   - as many procedural shapes at the same size ($W/other_kind): images of another kind.
# 1. train-teacher: timm's TEACHER (default convnext_atto: LayerNorm, no BatchNorm) from scratch on the teacher's
#    half at 32 px, plain cross-entropy, TEACHER_S seconds (skipped when $T/teacher.pt exists).
# 2. distill the zoo's STUDENT (default resnet18) from it with experiment=fast for STUDENT_S seconds each, four
#    sources side by side on the one GPU (each has about a quarter of it; the docs say so next to the figures):
#      same_kind   synthesizer=images on the unlabelled half;   other_kind   synthesizer=images on the shapes;
#      other_kind_selected  the shapes, only the 1,000 per class the teacher is surest of (synthesizer.per_class);
#      data_free   the fast synthesizer with its prior off (synthesizer.bn_weight=0): the data-free baseline.
#    SEEDS="0 1 2" runs each source once per seed (all side by side).
# Logs and summary.csv files go to $OUT (default .cache/no_batchnorm_gpu), then the end-of-run table. W, T, TEACHER,
# STUDENT, OVERRIDES (both commands), TEACHER_OVERRIDES and DISTILL_OVERRIDES change it for a dry run on the CPU:
#   W=/tmp/nbn_dry T=/tmp/nbn_dry/t OUT=/tmp/nbn_dry/out SUBSET=400 OVERRIDES=device=cpu \
#     TEACHER_OVERRIDES=teacher.train.epochs=1 DISTILL_OVERRIDES="trainer.rounds=2 trainer.student_steps=2 \
#     trainer.eval_every=1 synthesizer.batch_size=32" TEACHER=test_convnext STUDENT=microcnn \
#     benchmarks/no_batchnorm_gpu.sh ../shared/data/cifar10-jpeg 30 30
# (SUBSET=N keeps N training images per half and N test images in all; PER_CLASS=N for the selected source.)
set -euo pipefail
data=$1; teacher_s=$2; student_s=$3
OUT=${OUT:-.cache/no_batchnorm_gpu}; W=${W:-/tmp/nbn_gpu}; T=${T:-/tmp/nbn_gpu/teacher}
TEACHER=${TEACHER:-convnext_atto}; STUDENT=${STUDENT:-resnet18}; SEEDS=${SEEDS:-0}; SUBSET=${SUBSET:-0}
read -ra extra <<< "${OVERRIDES:-}"; read -ra teacher_extra <<< "${TEACHER_OVERRIDES:-}"
read -ra distill_extra <<< "${DISTILL_OVERRIDES:-}"
mkdir -p "$OUT"
source benchmarks/runs.sh
if [ ! -d "$W/other_kind" ]; then
  python3 - "$data" "$W" "$SUBSET" <<'PY'
import sys
from pathlib import Path

import torch
from PIL import Image

from datafree.data import build_dataset, load_tarball

data, work, subset = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])


def write(images, folder, names):
    for image, name in zip(images.permute(0, 2, 3, 1).numpy(), names):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(path)


train, test = load_tarball(data / "train.tar.gz"), load_tarball(data / "test.tar.gz")
generator = torch.Generator().manual_seed(0)
order = torch.randperm(len(train.labels), generator=generator)
teacher_half, same_kind = [], []
for k in range(len(train.classes)):  # each class halved: the two halves have every class in equal measure
    members = order[train.labels[order] == k]
    teacher_half.append(members[: len(members) // 2]); same_kind.append(members[len(members) // 2:])
teacher_half, same_kind = torch.cat(teacher_half), torch.cat(same_kind)
keep = slice(None) if subset == 0 else slice(subset)
teacher_half = teacher_half[torch.randperm(len(teacher_half), generator=generator)][keep]
same_kind = same_kind[torch.randperm(len(same_kind), generator=generator)][keep]
write(train.images[teacher_half], work / "half" / "train",
      [f"{train.classes[int(train.labels[i])]}/{n:05d}.png" for n, i in enumerate(teacher_half)])
tests = torch.arange(len(test.labels)) if subset == 0 else torch.randperm(len(test.labels), generator=generator)[:subset]
write(test.images[tests], work / "half" / "test", [f"{test.classes[int(test.labels[i])]}/{int(i):05d}.png" for i in tests])
write(train.images[same_kind], work / "same_kind", [f"{n:05d}.png" for n in range(len(same_kind))])
shapes = build_dataset("shapes", split="train", n=len(same_kind), seed=3, image_size=train.images.shape[-1])
write(shapes.images, work / "other_kind", [f"{n:05d}.png" for n in range(len(same_kind))])
print(f"teacher's half: {len(teacher_half)} images; same kind: {len(same_kind)}; other kind: {len(same_kind)}; "
      f"test: {len(tests)}")
PY
fi
common=(data=imagefolder "data.root=$W/half" progress=false "${extra[@]}")
if [ ! -f "$T/teacher.pt" ]; then
  start=$(date +%s)
  python3 -m datafree train-teacher "${common[@]}" teacher=timm "teacher.name=$TEACHER" \
      "teacher.train.time_budget_s=$teacher_s" "${teacher_extra[@]}" "hydra.run.dir=$T" > "$OUT/teacher.log" 2>&1 \
      || { tail -n 20 "$OUT/teacher.log"; exit 1; }
  echo "train-teacher wall time: $(( $(date +%s) - start )) s" | tee -a "$OUT/teacher.log"
fi
tail -n 3 "$OUT/teacher.log" 2>/dev/null || echo "teacher: $T/teacher.pt, trained earlier"
declare -A sources=(
  [same_kind]="synthesizer=images synthesizer.path=$W/same_kind"
  [other_kind]="synthesizer=images synthesizer.path=$W/other_kind"
  [other_kind_selected]="synthesizer=images synthesizer.path=$W/other_kind synthesizer.per_class=${PER_CLASS:-1000}"
  [data_free]="synthesizer.bn_weight=0"
)
names=()
for seed in $SEEDS; do
  for source in same_kind other_kind other_kind_selected data_free; do
    name="${source}_s$seed"; run="/tmp/nbn_$name"; names+=("$name"); rm -rf "$run"
    read -ra chosen <<< "${sources[$source]}"
    SIDE_BY_SIDE=1 start_run "$run/summary.csv" "$OUT/${name}_summary.csv" "$OUT/$name.log" \
        python3 -m datafree distill "${common[@]}" experiment=fast "teacher.checkpoint=$T/teacher.pt" \
        "student=$STUDENT" "seed=$seed" "trainer.time_budget_s=$student_s" trainer.eval_every=25 "${chosen[@]}" \
        "${distill_extra[@]}" "hydra.run.dir=$run"
  done
done
wait_runs
for name in "${names[@]}"; do echo "== $name"; grep -E "^(teacher|student) " "$OUT/$name.log" || tail -n 5 "$OUT/$name.log"; done
python3 benchmarks/end_table.py "$OUT" "" "${names[@]}"
