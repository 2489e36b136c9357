#!/usr/bin/env bash
# Candidate priors for a teacher without BatchNorm, tried on the CPU demo (docs/benchmarks.md, "Priors for a teacher
# without BatchNorm: candidates on the CPU demo"). Only the images rows use the package as it is:
# patches/no_batchnorm_candidates.diff adds the others as prototype options (fast synthesizer: soft_beta, rrc_scale,
# div_weight, px_weight; noise synthesizer: kind=spectral), applied here to a temporary worktree at the commit it
# applies to. Each run: experiment=demo_fast's 150 rounds on the demo's shapes at 32 px, timm's test_convnext teacher
# (LayerNorm, train-teacher's 90 epochs), the demo's 5k-parameter student, seeds 0-2, two runs at a time, end of run:
#   base      fast synthesizer, the BatchNorm prior off (synthesizer.bn_weight=0), as no_batchnorm_demo.sh's;
#   div1      + the cosine similarity of the teacher's penultimate features between images asked for the same class,
#               pushed down (weight 1): diversity within a class, which the BatchNorm prior otherwise enforces;
#   px10      + the batch's per-channel pixel mean and spread matched to the teacher's input normalisation (the one
#               statistic every teacher carries; weight 10);
#   soft1     the class targets replaced by ZSKD's (Nayak et al. 2019) Dirichlet soft targets drawn from the class
#               similarity of the teacher's last layer (beta 1, temperature 20);
#   ce2       the class term 4x stronger (ce_weight 2);   gs20   20 generator steps a round instead of 5;
#   rrc25     a random-resized crop (scale 0.25-1) of every image before the teacher, in synthesis;
#   di        the embedded demo's DeepInversion instead (trainer=demo synthesizer=deepinversion_demo: 40 rounds of 60 Adam
#               steps on 64 images from noise, its ADI term), its BatchNorm prior off as in base;
#   spectral  no synthesis: colour noise with a natural image's 1/f^a spectrum (a drawn in 1-3), labelled by the teacher;
#   images    no synthesis: CIFAR-10's test images (another domain, real photographs) at 32 px, labelled by the teacher
#               (synthesizer=images, which the package has: not data-free);
#   images_per_class_200  the same photographs, only the 200 per class the teacher is surest of (synthesizer.per_class:
#               DFND's selection);
#   images_same_kind  the same with 10,000 new drawings of the demo's shapes (seed 7, not the teacher's training
#               images; written as PNG files without their classes): what images of the same kind as the private
#               data give;
#   images_same_kind_N  the same with the first N of them only (N = 100, 500, 2000): how many such images it takes;
#   noise     no synthesis: uniform noise, the floor;
#   bn_prior, bn_images_same_kind_500  the demo's tinycnn teacher (BatchNorm, train-teacher's default): experiment=
#               demo_fast as it is (its prior on), and the 500 unlabelled shapes: which to use when a teacher has both.
# From the repository root: benchmarks/no_batchnorm_candidates.sh [OUT_DIR] (needs ../shared/data/cifar10-jpeg/test.tar.gz
# for the images row). Finished runs and the teacher already in OUT_DIR are kept.
set -euo pipefail
source benchmarks/unfinished.sh  # which seed x variant runs are still to do (sourced before the cd below)
out=$(realpath -m "${1:-.cache/no_batchnorm_candidates}"); mkdir -p "$out"
repo=$(pwd); work=$(mktemp -d); trap 'git -C "$repo" worktree remove --force "$work/tree" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
git worktree add --detach "$work/tree" 712a992ca70c4427c720c6d7eac374aca354c798 >/dev/null 2>&1
git -C "$work/tree" apply "$repo/benchmarks/patches/no_batchnorm_candidates.diff"
cd "$work/tree"
[ -f "$out/teacher_ln/teacher.pt" ] || python -m datafree train-teacher data.image_size=32 progress=false teacher=timm \
    teacher.name=test_convnext teacher.train.epochs=90 "hydra.run.dir=$out/teacher_ln" > "$out/teacher_ln.log" 2>&1
[ -f "$out/teacher_bn/teacher.pt" ] || python -m datafree train-teacher data.image_size=32 progress=false \
    "hydra.run.dir=$out/teacher_bn" > "$out/teacher_bn.log" 2>&1  # the demo's tinycnn, with BatchNorm
[ -d "$out/shapes_unlabelled" ] || python "$repo/benchmarks/shapes_folder.py" "$out/shapes_unlabelled" 10000
for n in 100 500 2000; do
  [ -d "$out/shapes_unlabelled_$n" ] || { mkdir "$out/shapes_unlabelled_$n"
    for k in $(seq -f %05g 0 $((n - 1))); do cp "$out/shapes_unlabelled/$k.png" "$out/shapes_unlabelled_$n/"; done; }
done
off=synthesizer.bn_weight=0
noise="synthesizer=noise synthesizer.batch_size=64"
variants=(  # NAME TEACHER (ln: the LayerNorm teacher, bn: the BatchNorm one) OVERRIDES...
  "base ln $off" "div1 ln $off +synthesizer.div_weight=1" "px10 ln $off +synthesizer.px_weight=10"
  "soft1 ln $off +synthesizer.soft_beta=1.0" "ce2 ln $off synthesizer.ce_weight=2" "gs20 ln $off synthesizer.g_steps=20"
  "rrc25 ln $off +synthesizer.rrc_scale=0.25"
  "di ln $off trainer=demo synthesizer=deepinversion_demo" "spectral ln $noise +synthesizer.kind=spectral"
  "images ln synthesizer=images synthesizer.batch_size=64 synthesizer.path=$repo/../shared/data/cifar10-jpeg/test.tar.gz"
  "images_per_class_200 ln synthesizer=images synthesizer.batch_size=64 synthesizer.per_class=200 synthesizer.path=$repo/../shared/data/cifar10-jpeg/test.tar.gz"
  "images_same_kind ln synthesizer=images synthesizer.batch_size=64 synthesizer.path=$out/shapes_unlabelled"
  "images_same_kind_100 ln synthesizer=images synthesizer.batch_size=64 synthesizer.path=$out/shapes_unlabelled_100"
  "images_same_kind_500 ln synthesizer=images synthesizer.batch_size=64 synthesizer.path=$out/shapes_unlabelled_500"
  "images_same_kind_2000 ln synthesizer=images synthesizer.batch_size=64 synthesizer.path=$out/shapes_unlabelled_2000"
  "noise ln $noise"
  "bn_prior bn" "bn_images_same_kind_500 bn synthesizer=images synthesizer.batch_size=64 synthesizer.path=$out/shapes_unlabelled_500"
)
unfinished "$out" "0 1 2" "${variants[@]}" | xargs -r -P 2 -L 1 bash -c '
  seed=$0 name=$1 teacher=$2; shift 2
  python -m datafree distill data.image_size=32 progress=false experiment=demo_fast teacher=checkpoint \
      teacher.checkpoint='"$out"'/teacher_$teacher/teacher.pt seed=$seed noise_baseline=false "$@" \
      "hydra.run.dir='"$out"'/${name}_s$seed" > "'"$out"'/${name}_s$seed.log" 2>&1'
python3 "$repo/benchmarks/seeds_table.py" "$out" base div1 px10 soft1 ce2 gs20 rrc25 di spectral images images_per_class_200 \
    images_same_kind images_same_kind_100 images_same_kind_500 images_same_kind_2000 noise bn_prior bn_images_same_kind_500
