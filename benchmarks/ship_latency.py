"""CPU latency at batch 1 and file sizes of networks, float and int8, on this machine.

    python benchmarks/ship_latency.py [--archs resnet18 wrn16_1 resnet34 wrn40_2] [--size 32] [--threads 1 2]
        [--out FILE.json] [--search-cost]

ARCHS are what `student=` takes by name: the zoo's CIFAR networks (`resnet18`), `torchvision:NAME`, `timm:NAME`;
each built for 10 classes and 3 channels, at SIZE x SIZE pixels (`--size 128` for the 128-px benchmark's
torchvision students and teacher).

Latency and size do not depend on what the weights are, so the networks are built with random weights (seed 0)
and deployed as `datafree deploy` deploys a distilled student (`deploy_student`: ONNX checked against PyTorch,
int8 by onnxruntime's static quantisation, here calibrated on 128 uniform-noise images since no accuracy is
measured). Each latency is `torch.utils.benchmark`'s median over at least half a second after a warm-up, on
THREADS intra-op threads: PyTorch eager, onnxruntime float, onnxruntime int8. What it prints is the "2-core
machine" part of docs/benchmarks.md's shipping table for students whose trained weights live on the GPU machine.
"""
from __future__ import annotations

import argparse
import json
import tempfile

import torch

from datafree.ship import DeploySettings, deploy_student
from datafree.ship.timing import cpu_name
from datafree.teachers import ClassifierInfo, Normalized
from datafree.teachers.students import build_student

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def measure(arch: str, threads: int, size: int = 32, search: bool = False) -> dict:
    torch.manual_seed(0)
    net, label = build_student(arch, num_classes=10, in_channels=3)
    model = Normalized(net, CIFAR_MEAN, CIFAR_STD).eval()
    info = ClassifierInfo(label, 10, (3, size, size), CIFAR_MEAN, CIFAR_STD)
    calibration = torch.randint(0, 256, (128, 3, size, size), dtype=torch.uint8)
    # Every layer int8 (int8_float_layers=0): random weights on noise say nothing about which layers int8 hurts.
    # With search, the sensitivity search runs in full (a target no file reaches, 8 layers, 256 check images): its
    # cost, which grows with the weight layers and the image size, not its choice.
    settings = DeploySettings(formats=["onnx"], int8=True, calibration_images=128, check_images=256 if search else 32,
                              int8_min_agreement=0.0, int8_target_agreement=2.0 if search else 0.98,
                              int8_float_layers=8 if search else 0, compare_real_calibration=False,
                              latency=not search, threads=threads)
    with tempfile.TemporaryDirectory() as out:
        manifest = deploy_student(model, info, out, synthetic=calibration, settings=settings, log=lambda line: None)
    int8 = manifest["int8"]
    if search:
        found = int8["sensitivity_search"]
        return {"arch": label, "size": size, "threads": threads, "cpu": cpu_name(), "layers": found["layers_weighed"],
                "search_s": found["seconds"]}
    latency = {k: round(v["median_ms"], 3) for k, v in int8["latency_ms_batch1"].items()}
    return {"arch": label, "size": size, "threads": threads, "cpu": int8["latency_cpu"], "latency_ms": latency,
            "kb": {k: round(v / 1e3, 1) for k, v in int8["bytes"].items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=["resnet18", "wrn16_1", "resnet34", "wrn40_2"])
    parser.add_argument("--size", type=int, default=32, help="input side in pixels")
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--out", help="also write the rows as JSON here")
    parser.add_argument("--search-cost", action="store_true", help="time deploy's int8 sensitivity search instead")
    args = parser.parse_args()
    print(f"CPU: {cpu_name()}")
    if args.search_cost:
        print("| network | threads | weight layers | search (s) |\n| --- | ---: | ---: | ---: |")
        rows = [measure(arch, threads, args.size, search=True) for arch in args.archs for threads in args.threads]
        for row in rows:
            print(f"| {row['arch']} at {args.size} px | {row['threads']} | {row['layers']} | {row['search_s']:.1f} |")
        if args.out:
            with open(args.out, "w") as handle:
                json.dump(rows, handle, indent=1)
        return
    print("| network | threads | PyTorch (ms) | onnxruntime float (ms) | onnxruntime int8 (ms) | float ONNX | int8 ONNX |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    rows = []
    for arch in args.archs:
        for threads in args.threads:
            row = measure(arch, threads, args.size)
            rows.append(row)
            ms, kb = row["latency_ms"], row["kb"]
            print(f"| {row['arch']} at {args.size} px | {threads} | {ms['pytorch_float']:.3f} | {ms['onnxruntime_float']:.3f} | "
                  f"{ms['onnxruntime_int8']:.3f} | {kb['float_onnx']:,.1f} kB | {kb['int8_onnx']:,.1f} kB |", flush=True)
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(rows, handle, indent=1)


if __name__ == "__main__":
    main()
