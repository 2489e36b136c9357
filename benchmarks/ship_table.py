"""The row of docs/benchmarks.md's "Shipping a student" table for one benchmarks/ship.sh results folder:
    python3 benchmarks/ship_table.py RESULTS_DIR
(RESULTS_DIR holds deploy.json, and report.json unless ship.sh ran with REPORT=0: the report's columns then read n/a,
and the CPU is deploy's)."""
import json
import sys
from pathlib import Path


def pct(value):
    return "n/a" if value is None else f"{100 * value:.2f}%"


def ms(timing):
    return "n/a" if not timing else f"{timing['median_ms']:.3f}"


def size(value):
    if value is None:
        return "n/a"
    return f"{value / 1e6:.2f} MB" if value >= 1e6 else f"{value / 1e3:.1f} kB"


def main(out: Path) -> None:
    deploy = json.loads((out / "deploy.json").read_text())
    report_path = out / "report.json"
    report = json.loads(report_path.read_text()) if report_path.is_file() else {"models": [], "machine": None}
    int8 = deploy["int8"] or {}
    accuracy = int8.get("accuracy") or {}
    calibration = int8.get("calibration_comparison") or {}
    latency = int8.get("latency_ms_batch1") or {}
    kept = int8.get("float_layers") or []  # deploy's sensitivity search kept these weight layers in float
    float_layers = f" ({len(kept)} layer{'s' * (len(kept) != 1)} in float)" if kept else ""
    rows = {row["name"]: row for row in report["models"]}
    student = rows.get("student", {})
    gpu = student.get("gpu_throughput")
    machine = report["machine"] or {  # deploy's latencies: its CPU and threads
        "gpu": None, "cpu": int8.get("latency_cpu", "n/a"),
        "cpu_threads": (latency.get("pytorch_float") or {}).get("threads", "n/a")}
    print("| student | float | int8 (synthetic calibration) | int8 (real calibration) | CPU ms, batch 1: PyTorch / "
          "ORT float / ORT int8 | student.pt / .onnx / .int8.onnx | GPU img/s | CPU threads |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    print(" | ".join([
        f"| {deploy['student']['arch']}", pct(accuracy.get("float")), pct(accuracy.get("int8")) + float_layers,
        pct(calibration.get("real_calibrated")),
        f"{ms(latency.get('pytorch_float'))} / {ms(latency.get('onnxruntime_float'))} / "
        f"{ms(latency.get('onnxruntime_int8'))}",
        f"{size(student.get('file_bytes'))} / {size(int8.get('bytes', {}).get('float_onnx'))} / "
        f"{size(int8.get('bytes', {}).get('int8_onnx'))}",
        "n/a" if not gpu else f"{gpu['images_per_s']:,.0f} (batch {gpu['batch']}, {machine['gpu']})",
        f"{machine['cpu_threads']} of {machine['cpu']} |",
    ]))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
