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

# Every method at one budget (benchmarks/methods.sh), drawn once its runs are kept under $r/methods_BUDGET/:
# the methods whose curve is there, the others named as missing.
methods_plot() {  # PAIR BUDGET_S TITLE
  local pair=$1 budget=$2 title=$3 curves=() missing=()
  for method in fast dfq dfad zskt dafl deepinversion; do
    local csv=$r/methods_$budget/methods_${pair}_${method}_summary.csv
    if [ -f "$csv" ]; then curves+=("$method=$csv"); else missing+=("$method"); fi
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "assets/methods_${pair}_${budget}s.png not drawn: no curve yet for ${missing[*]} (benchmarks/methods.sh)" >&2
    return 0
  fi
  python3 benchmarks/plot_curves.py "assets/methods_${pair}_${budget}s.png" "${curves[@]}" --title "$title"
}
methods_plot resnet34_resnet18 120 "ResNet-34 -> ResNet-18, every method, 120 s on one H100"
methods_plot wrn40_2_wrn16_1 120 "WRN-40-2 -> WRN-16-1, every method, 120 s on one H100"

# CIFAR-10 at 128 px beyond the zoo (benchmarks/any_teacher_128.sh; docs/benchmarks.md, "With the warm-up, the
# 128-px students learn", "Three seeds", "A third teacher", "MobileNetV3-Large for 20 minutes", the two "The
# 128-px ResNet-18 with the recipe as it is now" and the 5-minute MobileNetV3-Large in "VGG-11-BN -> ResNet-18 with
# the recipe as it is now" with its second seed in "The 5-minute MobileNetV3-Large at 128 px: a second seed" and its
# third, with the 15-minute ResNet-18, in "A third 5-minute MobileNetV3-Large seed and a 15-minute ResNet-18", and its
# 20-minute seed 1 in "A second 20-minute MobileNetV3-Large at 128 px"): six
# ResNet-50 teachers of one recipe; the curves are student/teacher.
w=$r/any_teacher/cifar128_warmup; s=$r/any_teacher/cifar128_seeds; t=$r/any_teacher/cifar128_teacher3
m=$r/any_teacher/cifar128_mnv3_20min; n=$r/any_teacher/cifar128_now; n3=$r/any_teacher/cifar128_now3
mnv3_300() { echo "$n3/mobilenet_v3_large_now_300_summary.csv,$n3/mobilenet_v3_large_now_300_s1_summary.csv,$n3/mobilenet_v3_large_now_300_s2_summary.csv"; }
python3 benchmarks/plot_curves.py assets/any_teacher_128px.png \
    "ResNet-18, alone, 3 seeds (teacher 79.27%)=$s/resnet18_s0_summary.csv,$s/resnet18_s1_summary.csv,$s/resnet18_s2_summary.csv" \
    "ResNet-18, alone (teacher 79.61%)=$t/resnet18_alone_summary.csv" \
    "MobileNetV3-Large, alone, momentum 0.1 (79.61%; stopped at 339 s)=$t/mobilenet_v3_large_alone_summary.csv" \
    "MobileNetV3-Large, alone, 20 min, weights averaged (76.93%; H100)=$m/mobilenet_v3_large_summary.csv" \
    "ResNet-18, alone, weights averaged, the recipe now (80.97%; H100)=$n/resnet18_now_s0_summary.csv" \
    "ResNet-18, alone, the recipe now, 3 seeds (teacher 78.07%; H100)=$n3/resnet18_now_s0b_summary.csv,$n3/resnet18_now_s1_summary.csv,$n3/resnet18_now_s2_summary.csv" \
    "ResNet-18, alone (teacher 77.26%)=$w/alone_resnet18_summary.csv" \
    "ResNet-18, 2 runs sharing the GPU (77.26%)=$w/side_by_side_resnet18_summary.csv" \
    "MobileNetV3-Large, 2 runs sharing the GPU (77.26%)=$w/side_by_side_mobilenet_v3_large_summary.csv" \
    "MobileNetV3-Large, alone, the recipe now, 300 s, 3 seeds (78.07%; H100)=$(mnv3_300)" \
    "ResNet-18, alone, the recipe now, 900 s (78.07%; H100)=$n3/resnet18_long900_summary.csv" \
    "MobileNetV3-Large, alone, the recipe now, 20 min, seed 1 (78.07%; H100)=$n3/mobilenet_v3_large_20min_s1_summary.csv" \
    --title "CIFAR-10 at 128 px: torchvision ResNet-50 teacher -> torchvision students
experiment=fast, one H200 (the runs with averaged weights: one H100)"
# The README's curve: only the runs of experiment=fast with the average of the student's weights, each alone on one
# H100 (all as the recipe is now, the average's BatchNorm statistics re-estimated, but the first 20-minute run, which
# came just before the re-estimate); the history above is docs/benchmarks.md's.
python3 benchmarks/plot_curves.py assets/any_teacher_128px_now.png \
    "ResNet-18, 3 seeds (teacher 78.07%)=$n3/resnet18_now_s0b_summary.csv,$n3/resnet18_now_s1_summary.csv,$n3/resnet18_now_s2_summary.csv" \
    "ResNet-18 (teacher 80.97%)=$n/resnet18_now_s0_summary.csv" \
    "ResNet-18, 900 s (teacher 78.07%)=$n3/resnet18_long900_summary.csv" \
    "MobileNetV3-Large, 3 seeds (teacher 78.07%)=$(mnv3_300)" \
    "MobileNetV3-Large, 20 min (teacher 76.93%; before the re-estimate)=$m/mobilenet_v3_large_summary.csv" \
    "MobileNetV3-Large, 20 min, seed 1 (teacher 78.07%)=$n3/mobilenet_v3_large_20min_s1_summary.csv" \
    --target 0.95 --ymin 0.4 --title "CIFAR-10 at 128 px: torchvision ResNet-50 teacher -> torchvision students
experiment=fast with the average of the weights, each run alone on one H100"
