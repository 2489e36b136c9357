"""A training step on the CPU in the two memory layouts, NCHW against channels_last, network by network; then short
runs of the fast recipe and of train-teacher on the grey 64-px folder, every network NCHW against the CPU's rule.

    python benchmarks/cpu_layout.py                 # the networks: forward + backward of a batch, one torch thread
    python benchmarks/cpu_layout.py --rounds 2      # and runs of experiment=fast, ResNet-18 teacher, two students
    python benchmarks/cpu_layout.py --skip-networks --teacher-epochs 2    # train-teacher of two networks
    python benchmarks/cpu_layout.py --skip-networks --generator --generator-rounds 4   # the synthesizers' generator
    python benchmarks/cpu_layout.py --only zoo --reps 8       # the zoo's networks alone
    python benchmarks/cpu_layout.py --skip-networks --demo 2  # the default job (the demo), before and after

datafree runs every network channels_last on a GPU. On the CPU it keeps NCHW, except for networks of depthwise
convolutions with BatchNorm, those whose class asks for it, as the demo's small CNNs do
(``datafree.utils.device.channels_last_on_cpu``), and the synthesizers' generators
(``generator_layout``: a generator's images are handed on NCHW); this is what that rule rests on.
The inputs stay NCHW in both columns, as the CPU runs feed them: a channels_last network's first convolution turns
them. Times are the median of timed calls after one warm-up, NCHW measured before and after channels_last (the
faster kept), so that a machine slowing down does not favour either; the ratio is NCHW / channels_last (above 1:
channels_last is faster). The runs need the folder (and the distillation runs its teacher) of
benchmarks/grey_shapes_cpu.sh.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import re
import sys
import tempfile
import time
from unittest import mock

import timm
import torch
import torchvision

from datafree.models import create_model
from datafree.synthesizers import adversarial, fast
from datafree.utils.device import autocast, depthwise_with_batchnorm

TV = torchvision.models
NETWORKS = [  # name, builder, input side (batch 64 up to 64 px, 32 above)
    ("zoo mobilenetv2", lambda: create_model("mobilenetv2", num_classes=10), 32),
    ("zoo resnet18", lambda: create_model("resnet18", num_classes=10), 32),
    ("zoo wrn16_2", lambda: create_model("wrn16_2", num_classes=10), 32),
    ("zoo tinycnn (the demo's teacher)", lambda: create_model("tinycnn", num_classes=10), 16),
    ("zoo microcnn (the demo's student)", lambda: create_model("microcnn", num_classes=10), 16),
    ("zoo resnet34", lambda: create_model("resnet34", num_classes=10), 32),
    ("zoo wrn40_2", lambda: create_model("wrn40_2", num_classes=10), 32),
    ("zoo wrn16_1", lambda: create_model("wrn16_1", num_classes=10), 32),
    ("zoo vgg11_bn", lambda: create_model("vgg11_bn", num_classes=10), 32),
    ("tv shufflenet_v2_x1_0", lambda: TV.shufflenet_v2_x1_0(num_classes=10), 64),
    ("tv mnasnet1_0", lambda: TV.mnasnet1_0(num_classes=10), 64),
    ("tv efficientnet_b0", lambda: TV.efficientnet_b0(num_classes=10), 64),
    ("tv mobilenet_v3_small", lambda: TV.mobilenet_v3_small(num_classes=10), 64),
    ("tv mobilenet_v3_large", lambda: TV.mobilenet_v3_large(num_classes=10), 64),
    ("tv mobilenet_v3_small", lambda: TV.mobilenet_v3_small(num_classes=10), 128),
    ("timm efficientnet_b0", lambda: timm.create_model("efficientnet_b0", num_classes=10), 64),
    ("timm mobilenetv3_small_100", lambda: timm.create_model("mobilenetv3_small_100", num_classes=10), 64),
    ("tv regnet_y_400mf", lambda: TV.regnet_y_400mf(num_classes=10), 64),
    ("tv resnext50_32x4d", lambda: TV.resnext50_32x4d(num_classes=10), 64),
    ("tv convnext_tiny", lambda: TV.convnext_tiny(num_classes=10), 64),
    ("tv resnet18", lambda: TV.resnet18(num_classes=10), 64),
    ("tv resnet50", lambda: TV.resnet50(num_classes=10), 64),
]


def step_seconds(net: torch.nn.Module, x: torch.Tensor, channels_last: bool, reps: int) -> float:
    net.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format).train()
    net(x).sum().backward()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        net(x).sum().backward()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def networks(reps: int, only: str = "") -> None:
    print("| network | input | depthwise with BatchNorm | NCHW ms | channels_last ms | NCHW / channels_last |")
    print("| --- | --- | --- | ---: | ---: | ---: |")
    for name, build, side in NETWORKS:
        if not name.startswith(only):
            continue
        torch.manual_seed(0)
        net, batch = build(), 64 if side <= 64 else 32
        x = torch.randn(batch, 3, side, side)
        nchw = step_seconds(net, x, False, reps)
        last = step_seconds(net, x, True, reps)
        nchw = min(nchw, step_seconds(net, x, False, reps))
        print(f"| {name} | {batch} x 3 x {side} x {side} | {'yes' if depthwise_with_batchnorm(net) else 'no'} | "
              f"{nchw * 1e3:.0f} | {last * 1e3:.0f} | {nchw / last:.2f} |", flush=True)


GENERATORS = [  # the DCGAN generator: the fast recipe's (no output BatchNorm) at four sizes, DFAD's at 32 px
    ("fast", 16, 64, False), ("fast", 32, 64, False), ("fast", 64, 32, False), ("fast", 128, 16, False),
    ("dfad", 32, 64, True),
]


def generator_step_seconds(generator: torch.nn.Module, batch: int, channels_last: bool, reps: int) -> float:
    """One Adam step of the generator alone, its images handed on NCHW as the synthesizers hand them (in bf16
    autocast on a GPU, as the recipes run it there)."""
    generator.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format).train()
    device = next(generator.parameters()).device
    optimizer = torch.optim.Adam(generator.parameters(), 1e-3)
    z = torch.randn(batch, generator.latent_dim, device=device)

    def step():
        with autocast(device):
            loss = generator(z).float().contiguous().square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    step()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def generators(reps: int, device: str = "cpu") -> None:
    """The table for the CPU, or with ``device=cuda`` for a GPU: batches of 256 (the fast recipe's at 32 px there)
    at 50x the repetitions."""
    print("| generator | images | NCHW ms | channels_last ms | NCHW / channels_last |\n| --- | --- | ---: | ---: | ---: |")
    for name, side, batch, output_bn in GENERATORS:
        torch.manual_seed(0)
        net = create_model("dcgan_generator", image_size=side, output_bn=output_bn).to(device)
        # a GPU's batch and repetitions, per row: reassigning reps here multiplied it again on every row (the GPU
        # table of 2026-12-06/07 ran 200 steps for its first row, 10,000 for its second and was cut in its third)
        batch, row_reps = (batch, reps) if device == "cpu" else (256, reps * 50)
        nchw = generator_step_seconds(net, batch, False, row_reps)
        last = generator_step_seconds(net, batch, True, row_reps)
        nchw = min(nchw, generator_step_seconds(net, batch, False, row_reps))
        digits = 0 if device == "cpu" else 2  # a GPU's step takes a few milliseconds
        print(f"| {name} | {batch} x 3 x {side} x {side} | {nchw * 1e3:.{digits}f} | {last * 1e3:.{digits}f} | "
              f"{nchw / last:.2f} |", flush=True)


def _layout(way: str) -> contextlib.ExitStack:
    """``rule``: the CPU's rule as it is; ``generator``: the synthesizers' generators NCHW, the networks by the rule;
    ``nchw``: every network and the generators NCHW (on the CPU the tensors stay NCHW in each)."""
    from datafree import jobs

    stack = contextlib.ExitStack()
    if way in ("nchw", "generator"):
        for module in (fast, adversarial):
            stack.enter_context(mock.patch.object(module, "generator_layout", lambda generator: generator))
    if way == "nchw":
        stack.enter_context(mock.patch.object(jobs, "network_layout", lambda x, device: x))
    return stack


def run_seconds(student: list[str], layout: str, rounds: int, folder: str) -> tuple[float, str]:
    """The run's seconds (its closing line's: from the first synthesis step to the end, the last evaluation
    included) and that line, in the layouts ``layout`` names (:func:`_layout`)."""
    from datafree.cli import main

    with tempfile.TemporaryDirectory() as out, _layout(layout), contextlib.redirect_stdout(io.StringIO()) as printed:
        sys.argv = ["datafree", "distill", "experiment=fast", f"teacher.checkpoint={folder}/teacher/teacher.pt",
                    "data=imagefolder", f"data.root={folder}/images", "trainer.time_budget_s=100000",
                    f"trainer.rounds={rounds}", "synthesizer.batch_size=32", "trainer.batch_size=64",
                    "trainer.eval_every=100", "progress=false", "noise_baseline=false", *student, f"hydra.run.dir={out}"]
        with contextlib.suppress(SystemExit):
            main()
        log = open(f"{out}/distill.log").read()
    closing = ([line for line in printed.getvalue().splitlines() if line.startswith("student ")] or [""])[-1]
    took = re.search(r"synthetic images, ([\d.]+)s on", closing)
    return float(took.group(1)) if took else float("nan"), closing or "(no closing line)"


def demo_seconds(layout: str) -> tuple[float, list[str]]:
    """The default job (``datafree distill``, the embedded demo: a tinycnn teacher trained first, DeepInversion, a
    microcnn student, the noise baseline) timed from the call to its end, and its accuracy lines, in the layouts
    ``layout`` names (:func:`_layout`; the demo has no generator and no depthwise network, so ``nchw`` is the rule
    before the demo's networks asked for channels_last)."""
    from datafree.cli import main

    with tempfile.TemporaryDirectory() as out, _layout(layout), contextlib.redirect_stdout(io.StringIO()) as printed:
        sys.argv = ["datafree", "distill", "progress=false", f"hydra.run.dir={out}"]
        start = time.perf_counter()
        with contextlib.suppress(SystemExit):
            main()
        took = time.perf_counter() - start
    return took, [line for line in printed.getvalue().splitlines() if "accuracy" in line]


def train_seconds(network: list[str], layout: str, epochs: int, folder: str) -> tuple[float, str]:
    """train-teacher on the grey folder for ``epochs`` epochs: the seconds its log gives at the last epoch, and
    that line, in the layouts ``layout`` names (:func:`_layout`)."""
    from datafree.cli import main

    with tempfile.TemporaryDirectory() as out, _layout(layout), contextlib.redirect_stdout(io.StringIO()):
        sys.argv = ["datafree", "train-teacher", *network, "data=imagefolder", f"data.root={folder}/images",
                    "data.batch_size=64", f"teacher.train.epochs={epochs}", "seed=0", "progress=false",
                    f"hydra.run.dir={out}"]
        with contextlib.suppress(SystemExit):
            main()
        lines = [line for line in open(f"{out}/train-teacher.log").read().splitlines() if f"epoch {epochs}/" in line]
    took = re.search(r"\((\d+)s\)", lines[-1]) if lines else None
    return float(took.group(1)) if took else float("nan"), lines[-1].split(" - ", 1)[-1] if lines else "(no epoch line)"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=0, help="also time runs of this many rounds of experiment=fast")
    parser.add_argument("--teacher-epochs", type=int, default=0, help="also time train-teacher of two networks")
    parser.add_argument("--skip-networks", action="store_true", help="the runs only")
    parser.add_argument("--only", default="", help="the networks whose name starts so (zoo, tv, timm)")
    parser.add_argument("--generator", action="store_true", help="also time the synthesizers' generator alone")
    parser.add_argument("--generator-device", default="cpu", help="cuda: the generator's table on a GPU")
    parser.add_argument("--generator-rounds", type=int, default=0,
                        help="also time runs of this many rounds of experiment=fast, the generator NCHW against the rule")
    parser.add_argument("--demo", type=int, default=0,
                        help="also time this many passes of the default job, its networks NCHW against the rule")
    parser.add_argument("--folder", default=".cache/grey_shapes_cpu", help="benchmarks/grey_shapes_cpu.sh's folder")
    args = parser.parse_args()
    torch.set_num_threads(1)  # cpu_threads=auto on the 2-core machine
    if not args.skip_networks:
        networks(args.reps, args.only)
    if args.rounds:
        print(f"\n| student | {args.rounds} rounds, NCHW s | the CPU rule s | NCHW / rule |\n| --- | ---: | ---: | ---: |")
        for student in (["student=torchvision", "student.name=mobilenet_v3_small"],
                        ["student=timm", "student.name=efficientnet_b0"]):
            (a, end_a), (b, end_b) = (run_seconds(student, way, args.rounds, args.folder) for way in ("nchw", "rule"))
            print(f"| {student[1].split('=')[1]} | {a:.1f} | {b:.1f} | {a / b:.2f} |", flush=True)
            print(f"<!-- nchw: {end_a} -->\n<!-- rule: {end_b} -->", flush=True)
    if args.generator:
        print()
        generators(args.reps, args.generator_device)
    if args.generator_rounds:
        # one student, the two ways twice in turn: this machine's pace drifts by more than a run's noise
        student = ["student=torchvision", "student.name=mobilenet_v3_small"]
        print(f"\n| pass | {args.generator_rounds} rounds, the generator NCHW s | the CPU rule s | NCHW / rule |\n"
              "| --- | ---: | ---: | ---: |")
        for turn in (1, 2):
            (a, end_a), (b, end_b) = (run_seconds(student, way, args.generator_rounds, args.folder)
                                      for way in ("generator", "rule"))
            print(f"| {turn} | {a:.1f} | {b:.1f} | {a / b:.2f} |", flush=True)
            print(f"<!-- generator NCHW: {end_a} -->\n<!-- rule: {end_b} -->", flush=True)
    if args.teacher_epochs:
        print(f"\n| train-teacher | {args.teacher_epochs} epochs, NCHW s | the CPU rule s | NCHW / rule |\n"
              "| --- | ---: | ---: | ---: |")
        for network in (["teacher=torchvision", "teacher.name=mobilenet_v3_small"],
                        ["teacher=timm", "teacher.name=efficientnet_b0"]):
            (a, end_a), (b, end_b) = (train_seconds(network, way, args.teacher_epochs, args.folder)
                                      for way in ("nchw", "rule"))
            print(f"| {network[1].split('=')[1]} | {a:.0f} | {b:.0f} | {a / b:.2f} |", flush=True)
            print(f"<!-- nchw: {end_a} -->\n<!-- rule: {end_b} -->", flush=True)
    if args.demo:
        # the two ways in turn, pass after pass: this machine's pace drifts by more than a run's noise
        print("\n| pass | the demo NCHW s | the CPU rule s | NCHW / rule |\n| --- | ---: | ---: | ---: |")
        for done in range(args.demo):
            (a, lines_a), (b, lines_b) = (demo_seconds(way) for way in ("nchw", "rule"))
            print(f"| {done + 1} | {a:.1f} | {b:.1f} | {a / b:.2f} |", flush=True)
            print("".join(f"<!-- {way}: {line} -->\n" for way, lines in (("nchw", lines_a), ("rule", lines_b))
                          for line in lines), end="", flush=True)
