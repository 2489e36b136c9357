#!/usr/bin/env bash
# One distillation per objective beside KD, CIFAR-10, ResNet-34 -> ResNet-18, the fast recipe at a fixed
# wall-clock budget (GPU machine, repo root); logs and summary.csv of each row under $OUT, then the table:
#   benchmarks/objectives.sh TEACHER_PIECES_DIR BUDGET_S [ROW ...]     (no ROW: every row, one after another)
#   benchmarks/objectives.sh .cache/dev/resnet34 240 kd rkd_distance    (two rows; one row fits a 10-minute slot)
# The teacher arrives as float16 pieces (benchmarks/shard_checkpoint.py), the test set as .cache/dist/data
# (see benchmarks/cifar10_distill.sh, which runs each row). Weights are the papers' where they give one for
# CIFAR, untuned. Rows whose terms read layers through hooks (attention, hint, similarity, penultimate
# embeddings) run the student step eagerly instead of as one CUDA graph and so take fewer steps in the same
# budget: compare them with kd_eager, the KD-only baseline run the same way. The table's steps column says how
# many student steps each row took.
#   SIDE_BY_SIDE=1 benchmarks/objectives.sh PIECES 480 kd rkd_angle hint   (the rows at once on the one GPU,
#       through benchmarks/variants.sh: each gets a share of it, so put kd among them and compare the rows of one
#       call only; three rows at 480 s took 513-520 s of a 10-minute slot on an H100, docs/benchmarks.md)
#   EXTRA="overrides ..." adds overrides to every row (e.g. a small batch for a smoke test of the script on a CPU).
set -euo pipefail
set -f  # the overrides hold [lists]: no file-name expansion
if [ $# -lt 2 ]; then
  echo "usage: $0 TEACHER_PIECES_DIR BUDGET_S [ROW ...]" >&2
  exit 2
fi
pieces=$1; budget=$2; shift 2
ORDER=(kd kd_eager adversarial adversarial_penultimate rkd_distance rkd_angle similarity attention hint)
declare -A ROWS=(
  [kd]=""
  [kd_eager]="trainer.cuda_graphs=false"
  [adversarial]="trainer.discriminator.weight=0.1"
  [adversarial_penultimate]="trainer.discriminator.weight=0.1 trainer.discriminator.embedding=penultimate"
  [rkd_distance]="trainer.rkd.distance_weight=25"
  [rkd_angle]="trainer.rkd.angle_weight=50"
  [similarity]="trainer.similarity.weight=3000 trainer.similarity.teacher_layers=[layer4] trainer.similarity.student_layers=[layer4]"
  [attention]="trainer.attention.weight=250 trainer.attention.teacher_layers=[layer2,layer3,layer4] trainer.attention.student_layers=[layer2,layer3,layer4]"
  [hint]="trainer.hint.weight=0.1 trainer.hint.teacher_layers=[layer3,layer4] trainer.hint.student_layers=[layer3,layer4] trainer.hint.pair_weights=[0.5,1.0]"
)
rows=("$@")
[ ${#rows[@]} -eq 0 ] && rows=("${ORDER[@]}")
for row in "${rows[@]}"; do
  if [[ ! -v "ROWS[$row]" ]]; then
    echo "unknown row '$row': choose from ${ORDER[*]}" >&2
    exit 2
  fi
done
if [ "${SIDE_BY_SIDE:-0}" = 1 ]; then
  specs=()
  for row in "${rows[@]}"; do
    specs+=("objectives_$row=experiment=cifar10_resnet34_resnet18_fast seed=0 ${ROWS[$row]} ${EXTRA:-}")
  done
  benchmarks/variants.sh "$pieces" "$budget" "${specs[@]}"
else
  for row in "${rows[@]}"; do
    # shellcheck disable=SC2086  # the row's overrides are meant to split into words
    benchmarks/cifar10_distill.sh "objectives_$row" "$pieces" experiment=cifar10_resnet34_resnet18_fast seed=0 \
        trainer.time_budget_s="$budget" ${ROWS[$row]} ${EXTRA:-}
  done
fi
python3 benchmarks/end_table.py "$OUT" objectives_ "${rows[@]}"
