#!/usr/bin/env bash
# The screen that set the fast recipe's g_steps and student_steps (docs/benchmarks.md, "The g_steps screen"):
# WRN-40-2 -> WRN-16-1, several runs side by side on one GPU (benchmarks/variants.sh), so each run gets a
# share of it: compare the runs with one another, not with runs that had the GPU alone. GPU machine, repo root:
#   benchmarks/fast_screen.sh TEACHER_PIECES_DIR 1|2|3        (one group per call: each fits a 10-minute slot)
# The settings are spelled out in full, so the screen means the same after the recipe's defaults change.
set -euo pipefail
pieces=$1; group=$2
# The recipe as it was before the screen: 5 generator steps and 10 student steps per synthesized batch.
E="experiment=cifar10_wrn40_2_wrn16_1_fast synthesizer.g_steps=5 trainer.student_steps=10"
case $group in
  1) benchmarks/variants.sh "$pieces" 540 base="$E" T20="$E trainer.loss.temperature=20" \
         s30="$E trainer.student_steps=30" T20s30="$E trainer.loss.temperature=20 trainer.student_steps=30" ;;
  2) benchmarks/variants.sh "$pieces" 540 g10="$E synthesizer.g_steps=10" g20="$E synthesizer.g_steps=20" \
         ce2="$E synthesizer.ce_weight=2" lr1e2="$E synthesizer.lr=1e-2" ;;
  3) benchmarks/variants.sh "$pieces" 470 g20="$E synthesizer.g_steps=20" g40="$E synthesizer.g_steps=40" \
         g20T20="$E synthesizer.g_steps=20 trainer.loss.temperature=20" \
         g20s20="$E synthesizer.g_steps=20 trainer.student_steps=20" ;;
  *) echo "usage: $0 TEACHER_PIECES_DIR 1|2|3" >&2; exit 2 ;;
esac
