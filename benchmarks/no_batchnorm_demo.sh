#!/usr/bin/env bash
# The fast recipe's BatchNorm prior, and teachers that have none (docs/benchmarks.md, "A teacher without BatchNorm"):
# the CPU demo's recipes (their 150 rounds) on the demo's shapes at 32 px, seeds 0-2, two runs at a time:
#   bn:              the demo's tinycnn teacher (BatchNorm), experiment=demo_fast as it is (the prior on);
#   bn_off:          the same, the prior off (synthesizer.bn_weight=0);
#   layernorm:       timm's test_convnext teacher (LayerNorm; 90 epochs of train-teacher here), which keeps no
#                    statistics: experiment=demo_fast with the prior off (synthesizer.bn_weight=0);
#   layernorm_dfad, layernorm_dafl: the same teacher with the generator methods that need no BatchNorm
#                    (experiment=demo_dfad, demo_dafl);
#   layernorm_noise: the same teacher, the fast demo's trainer on uniform noise (synthesizer=noise): the floor.
# From the repository root: benchmarks/no_batchnorm_demo.sh [OUT_DIR]. Teachers and finished runs already there are
# kept (a run is finished when its log has the student's line).
set -euo pipefail
source benchmarks/unfinished.sh  # which seed x variant runs are still to do
out=${1:-.cache/no_batchnorm_demo}; mkdir -p "$out"
at32="data.image_size=32 progress=false"
[ -f "$out/teacher_bn/teacher.pt" ] || python -m datafree train-teacher $at32 "hydra.run.dir=$out/teacher_bn" \
    > "$out/teacher_bn.log" 2>&1 &
[ -f "$out/teacher_ln/teacher.pt" ] || python -m datafree train-teacher $at32 teacher=timm teacher.name=test_convnext \
    teacher.train.epochs=90 "hydra.run.dir=$out/teacher_ln" > "$out/teacher_ln.log" 2>&1 &
wait
bn="teacher.checkpoint=$out/teacher_bn/teacher.pt"
ln="teacher=checkpoint teacher.checkpoint=$out/teacher_ln/teacher.pt"
variants=(
  "bn experiment=demo_fast $bn"
  "bn_off experiment=demo_fast $bn synthesizer.bn_weight=0"
  "layernorm experiment=demo_fast $ln synthesizer.bn_weight=0"
  "layernorm_dfad experiment=demo_dfad $ln"
  "layernorm_dafl experiment=demo_dafl $ln"
  "layernorm_noise experiment=demo_fast $ln synthesizer=noise synthesizer.batch_size=64"
)
unfinished "$out" "0 1 2" "${variants[@]}" | xargs -r -P 2 -L 1 bash -c '
  seed=$0 name=$1; shift
  python -m datafree distill '"$at32"' seed=$seed noise_baseline=false "$@" "hydra.run.dir='"$out"'/${name}_s$seed" \
      > "'"$out"'/${name}_s$seed.log" 2>&1'
python3 benchmarks/seeds_table.py "$out" bn bn_off layernorm layernorm_dfad layernorm_dafl layernorm_noise
