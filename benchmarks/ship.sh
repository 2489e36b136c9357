#!/usr/bin/env bash
# Ship a distilled student and measure it (docs/benchmarks.md, "Shipping a student"), from the repo root:
#   benchmarks/ship.sh RUN_DIR RESULTS_DIR [OVERRIDES ...]
# RUN_DIR is a finished distill run (student.pt, state_last.pt: its replay pool gives the synthetic images; its
# recipe names the teacher and the test data). Two commands (python3 -m datafree: also where datafree is on
# PYTHONPATH rather than installed, as benchmarks/device_env.sh does on the GPU machine):
#   datafree deploy  ONNX, TorchScript and torch.export files, each checked against PyTorch, and student.int8.onnx
#                    (onnxruntime static int8 calibrated on CALIBRATION synthetic images; as many real training
#                    images calibrate a second int8 file for comparison), CPU latency at batch 1 (PyTorch,
#                    onnxruntime float and int8) on THREADS threads
#   datafree report  teacher, student, student ONNX and student int8 side by side (GPU throughput at batch
#                    GPU_BATCH where there is a GPU)
# The files go to .cache/ship/<RUN_DIR's name>/{deploy,report}; RESULTS_DIR gets what is worth keeping: what the
# commands printed, deploy.json, report.json, report.md, the pictures, and ship.md, the Markdown row of the table
# (benchmarks/ship_table.py). OVERRIDES (hydra overrides, e.g. data=cifar10_jpeg data.root=DIR) go to both commands.
# THREADS defaults to auto (half the usable cores: 1 on the 2-core machine). REPORT=0 skips the report (deploy's int8
# accuracy and latencies alone, for a command short of time: for the 32-px ResNet-18 of results/ship/h200_second/,
# deploy.json was written 81 s after the distill log's last line and report.json 93 s after deploy.json); the
# table's report columns then read n/a.
set -euo pipefail
run=$(realpath "$1"); results=$2; shift 2
work=.cache/ship/$(basename "$run"); THREADS=${THREADS:-auto}; CALIBRATION=${CALIBRATION:-512}
GPU_BATCH=${GPU_BATCH:-1024}
rm -rf "$work"; mkdir -p "$work" "$results"
python3 -m datafree deploy run="$run" int8=true calibration_images="$CALIBRATION" cpu_threads="$THREADS" \
    hydra.run.dir="$work/deploy" "$@" | tee "$results/deploy.txt"
cp "$work/deploy/deploy.json" "$results/"
if [ "${REPORT:-1}" != 0 ]; then
  python3 -m datafree report run="$run" deployed="$work/deploy" cpu_threads="$THREADS" gpu_batch="$GPU_BATCH" \
      hydra.run.dir="$work/report" "$@" | tee "$results/report.txt"
  cp "$work"/report/report.{json,md} "$work"/report/*.png "$results/"
fi
python3 benchmarks/ship_table.py "$results" | tee "$results/ship.md"
