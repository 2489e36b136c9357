#!/usr/bin/env bash
# PSAQ-ViT's patch-similarity prior (synthesizer.patch_weight) for a vision-transformer teacher, on the CPU demo
# (docs/benchmarks.md, "A prior for vision transformers: PSAQ-ViT's patch similarity on the CPU demo"): the demo's
# shapes at 32 px, a small timm ViT teacher (patch 4, 64 tokens, width 64, 4 blocks, 4 heads; train-teacher, 60 epochs),
# the demo's 5k-parameter student, seeds 0-2, two runs at a time, end of run:
#   base          experiment=demo_fast (150 rounds), the BatchNorm prior off (synthesizer.bn_weight=0): what a ViT
#                   teacher gets from the fast synthesizer;
#   patchW        the same + the patch-similarity prior at weight W (synthesizer.patch_weight=W);
#   di            the embedded demo's DeepInversion as it is (40 rounds of 60 Adam steps on 64 images from noise; the
#                   ADI term, TV), the BatchNorm prior off;
#   di_patch1     the same + the patch-similarity prior (synthesizer.patch_weight=1);
#   di_noadi      the demo's DeepInversion without its ADI term (synthesizer.adi_weight=0): the class and TV alone;
#   psaq          the same + the patch-similarity prior: PSAQ-ViT's own recipe (images optimised from noise against the
#                   class, the prior at weight 1 beside a class term at weight 1, and a smoothness term), with 60 steps
#                   a batch instead of its 1,000;
#   images_same_kind_500  experiment=demo_fast's loop without synthesis, not data-free: 500 new drawings of the
#                   shapes without classes (the reference of docs/benchmarks.md's "Priors for a teacher without
#                   BatchNorm");
#   noise         the same loop on uniform noise, the floor.
# The prior is a prototype option that is not in the package: patches/vit_patch_similarity.diff adds it
# (datafree/ops/patch_similarity.py, synthesizer.patch_weight for the fast synthesizer and DeepInversion, and its tests),
# applied here to a temporary worktree at the commit it applies to.
# From the repository root: benchmarks/vit_prior_demo.sh [OUT_DIR] [VARIANT ...] (default: all). Finished runs and the
# teacher already in OUT_DIR are kept.
set -euo pipefail
source benchmarks/unfinished.sh  # which seed x variant runs are still to do (sourced before the cd below)
out=$(realpath -m "${1:-.cache/vit_prior_demo}"); mkdir -p "$out"; shift || true
repo=$(pwd); work=$(mktemp -d); trap 'git -C "$repo" worktree remove --force "$work/tree" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
git worktree add --detach "$work/tree" dd0337cc9fe3001c594c89d3251dc85e7362b139 >/dev/null 2>&1
git -C "$work/tree" apply "$repo/benchmarks/patches/vit_patch_similarity.diff"
cd "$work/tree"
vit='{_target_: timm.models.vision_transformer.VisionTransformer, img_size: 32, patch_size: 4, embed_dim: 64, depth: 4, num_heads: 4, mlp_ratio: 2, num_classes: 10}'
[ -f "$out/teacher_vit/teacher.pt" ] || python -m datafree train-teacher data.image_size=32 progress=false teacher=module \
    "+teacher.model=$vit" teacher.train.epochs=60 "hydra.run.dir=$out/teacher_vit" > "$out/teacher_vit.log" 2>&1
[ -d "$out/shapes_unlabelled_500" ] || python "$repo/benchmarks/shapes_folder.py" "$out/shapes_unlabelled_500" 500
off=synthesizer.bn_weight=0
fast="experiment=demo_fast $off"
variants=(  # NAME OVERRIDES...
  "base $fast" "patch1 $fast synthesizer.patch_weight=1" "patch10 $fast synthesizer.patch_weight=10"
  "di $off" "di_patch1 $off synthesizer.patch_weight=1"
  "di_noadi $off synthesizer.adi_weight=0" "psaq $off synthesizer.adi_weight=0 synthesizer.patch_weight=1"
  "images_same_kind_500 experiment=demo_fast synthesizer=images synthesizer.batch_size=64 synthesizer.path=$out/shapes_unlabelled_500"
  "noise experiment=demo_fast synthesizer=noise synthesizer.batch_size=64"
)
names=("$@"); [ ${#names[@]} -gt 0 ] || for variant in "${variants[@]}"; do names+=("${variant%% *}"); done
chosen=(); for variant in "${variants[@]}"; do [[ " ${names[*]} " != *" ${variant%% *} "* ]] || chosen+=("$variant"); done
unfinished "$out" "0 1 2" "${chosen[@]}" | xargs -r -P 2 -L 1 bash -c '
  seed=$0 name=$1; shift
  python -m datafree distill data.image_size=32 progress=false teacher=module "+teacher.model='"$vit"'" \
      teacher.checkpoint='"$out"'/teacher_vit/teacher.pt seed=$seed noise_baseline=false "$@" \
      "hydra.run.dir='"$out"'/${name}_s$seed" > "'"$out"'/${name}_s$seed.log" 2>&1'
python3 "$repo/benchmarks/seeds_table.py" "$out" "${names[@]}"
# What the prior's estimate says about the teacher's real test images and about uniform noise:
PYTHONPATH="$work/tree" python "$repo/benchmarks/patch_entropy_probe.py" "$out/teacher_vit/teacher.pt"
