"""What cuDNN's algorithm search costs a student's first step, and what it saves on each later one.

datafree turns the search on for GPUs (``torch.backends.cudnn.benchmark``, datafree/utils/device.py): the first
call of each convolution shape times the algorithms and keeps the fastest. A 128-px torchvision MobileNetV3-Large
spent 34-50 s in distill's fit check (:func:`~datafree.distill.preflight.check_student_fits`, one forward and
backward at the run's batch) where a ResNet-18 spent 6 s with the same teacher, before the budget counts
(docs/benchmarks.md, "A third 5-minute MobileNetV3-Large seed"). This times, for each network, with the search on
and off, each in a fresh process (the choices are kept per process): that fit check of the student alone, then the
mean of the steps after it (forward and backward in bf16 and channels_last, as the steps run). It overlaps
benchmarks/size_a_run.py, which already prices the search (``--no-cudnn-benchmark``) over the trainer's set-up and whole
rounds with the teacher, graphed; this one adds only the student alone, eager, each setting in its own process. For a
decision about a run, use size_a_run.py:

    python benchmarks/autotune_probe.py --nets mobilenet_v3_large resnet18 --size 128 --batch 512

Whether the search pays for itself is its extra seconds in the fit check against the milliseconds it saves times the
run's steps (2,310-2,440 for those 5-minute runs). On an H100 it put 37 s into the MobileNetV3's check (48.7 s against
11.4 s without) and 5.5 s into the ResNet-18's, and its choices made the MobileNetV3's later steps slower, not faster
(docs/benchmarks.md, "cuDNN's search and the 128-px MobileNetV3's set-up"): the student's steps alone and eager, so not
yet a verdict on a whole run's rounds (benchmarks/size_a_run.py --no-cudnn-benchmark prices those). On the CPU
(``--device cpu``) there is no search: both rows time the same thing, which is what the test of this script runs.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time


def probe(net: str, *, size: int, batch: int, steps: int, search: bool, device_name: str) -> dict:
    """One network in this process: the fit check's seconds, then the later steps' mean in milliseconds."""
    import torch
    import torchvision

    from datafree.distill.preflight import check_student_fits
    from datafree.utils.device import autocast, network_layout

    device = torch.device(device_name)
    torch.backends.cudnn.benchmark = search
    torch.backends.cudnn.allow_tf32 = True
    student = network_layout(getattr(torchvision.models, net)(num_classes=10).to(device), device)
    inputs = network_layout(torch.rand(batch, 3, size, size, device=device), device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def step() -> None:
        with autocast(device):
            output = student(inputs)
        output.float().sum().backward()

    sync()
    started = time.perf_counter()
    check_student_fits(None, student, batch_size=batch, input_size=(3, size, size), device=device, amp=True)
    sync()
    fit_check_s = time.perf_counter() - started
    student.train()
    step()  # shapes the fit check did not meet (none expected: the same batch) would be searched here, not timed
    sync()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return {"net": net, "search": search, "fit_check_s": fit_check_s,
            "step_ms": 1000 * (time.perf_counter() - started) / steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", nargs="+", default=["mobilenet_v3_large", "resnet18"], help="torchvision names")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--steps", type=int, default=20, help="later steps timed")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--child", nargs=2, metavar=("NET", "SEARCH"), help=argparse.SUPPRESS)  # one fresh process
    args = parser.parse_args()
    shape = dict(size=args.size, batch=args.batch, steps=args.steps, device_name=args.device)
    if args.child:
        print(json.dumps(probe(args.child[0], search=args.child[1] == "on", **shape)))
        return
    print(f"{args.device}, {args.size} px, batch {args.batch}, the later steps' mean over {args.steps}")
    print("| network | cuDNN search | fit check (s) | a later step (ms) |")
    print("| --- | --- | ---: | ---: |")
    for net in args.nets:
        for search in ("on", "off"):
            child = subprocess.run([sys.executable, __file__, "--child", net, search, "--size", str(args.size),
                                    "--batch", str(args.batch), "--steps", str(args.steps), "--device", args.device],
                                   capture_output=True, text=True)
            if child.returncode != 0:
                sys.exit(f"{net} with the search {search} failed:\n{child.stderr[-2000:]}")
            row = json.loads(child.stdout.strip().splitlines()[-1])
            print(f"| {net} | {search} | {row['fit_check_s']:.2f} | {row['step_ms']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
