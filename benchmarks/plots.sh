#!/usr/bin/env bash
# Redraws the plots the README and docs/benchmarks.md show, from the curves kept in benchmarks/results/
# (any machine, repo root; needs matplotlib): bash benchmarks/plots.sh
set -euo pipefail
r=benchmarks/results
seeds() { echo "$r/$1_s0_summary.csv,$r/$1_s1_summary.csv,$r/$1_s2_summary.csv"; }
python3 benchmarks/plot_curves.py assets/accuracy_vs_time.png \
    "ResNet-18, fast (g_steps 20, student_steps 20)=$(seeds fast20_resnet34_resnet18)" \
    "ResNet-18, fast (earlier: g_steps 5, student_steps 10)=$(seeds fast_resnet34_resnet18)" \
    "WRN-16-1, fast (g_steps 20, student_steps 20)=$(seeds fast20_wrn40_2_wrn16_1)" \
    "WRN-16-1, fast (earlier)=$(seeds fast_wrn40_2_wrn16_1)" \
    "ResNet-18, DFQ-style (label-smoothed teacher)=$r/dfq_resnet34_resnet18_summary.csv" \
    "ResNet-18, DFAD (label-smoothed teacher)=$r/dfad_resnet34_resnet18_summary.csv" \
    "ResNet-18, DeepInversion (label-smoothed teacher)=$r/di_resnet34_resnet18_summary.csv" \
    --title "CIFAR-10, one H100: student / teacher accuracy against wall time"
