"""Speed of datafree's hot paths as ratios to a plain teacher forward+backward, in one process.

    python benchmarks/speed.py [--teacher resnet34] [--student resnet18] [--batch 256] [--base-width 64] [--profile]

Every figure is the mean over timed repetitions after warm-up, with the device
synchronised only around each timed block. Ratios, not seconds, are what to
compare across machines. The reference is measured twice: eagerly (what a research
script does) and captured in a CUDA graph (the same arithmetic without launch
overhead), so a graphed step can be compared with either. ``--profile`` adds, for the
fast method's round (generator steps + student steps, both graphed), the share of wall
time the GPU spends in kernels and the kernels that take the most time.
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from datafree.distill.losses import KDLoss
from datafree.distill.trainer import Distiller
from datafree.models import create_model
from datafree.synthesizers import Augment, DeepInversion, FastSynthesizer, NoiseSynthesizer
from datafree.ops.hooks import BatchNormStatistics
from datafree.teachers import Normalized, freeze
from datafree.utils.device import autocast, resolve_device
from datafree.utils.graphs import CapturedStep


def timed(fn, device, warmup=5, reps=20) -> float:
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / reps


def kernel_share(fn, device, reps: int) -> tuple[float, list[tuple[str, float]]]:
    """Share of wall time covered by GPU kernels over ``reps`` calls, and the five costliest kernels (ms per call)."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    torch.cuda.synchronize(device)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        start = time.perf_counter()
        for _ in range(reps):
            fn()
        torch.cuda.synchronize(device)
        wall = time.perf_counter() - start
    kernels = [e for e in prof.events() if e.device_type.name == "CUDA"]
    busy = sum(e.device_time for e in kernels) / 1e6  # us -> s
    by_name: dict[str, float] = {}
    for e in kernels:
        by_name[e.name] = by_name.get(e.name, 0.0) + e.device_time / 1e3 / reps
    top = sorted(by_name.items(), key=lambda kv: -kv[1])[:5]
    return busy / wall, top


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default="resnet34")
    parser.add_argument("--student", default="resnet18")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--reps", type=int, default=20, help="timed repetitions of each step")
    parser.add_argument("--profile", action="store_true", help="kernel share of the fast method's round (CUDA)")
    parser.add_argument("--base-width", type=int, default=64, help="the fast generator's width (the recipes: 64)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    mean, std = (0.5,) * 3, (0.25,) * 3

    def net(name):
        model = Normalized(create_model(name, num_classes=10), mean, std).to(device)
        return model.to(memory_format=torch.channels_last) if cuda else model

    teacher, student = freeze(net(args.teacher)), net(args.student)
    shape = (args.batch, 3, args.size, args.size)
    pixels = torch.rand(shape, device=device, requires_grad=True)
    targets = torch.randint(10, (args.batch,), device=device)

    def plain():  # the reference: teacher forward + backward to the input, nothing else
        with autocast(device):
            loss = F.cross_entropy(teacher(pixels).float(), targets)
        return torch.autograd.grad(loss, [pixels])

    def synth_step(adi: float):
        synth = DeepInversion(batch_size=args.batch, iterations=1, adi_weight=adi)
        synth.bind(teacher, student, 10, shape[1:], device)
        x = torch.rand(shape, device=device, requires_grad=True)
        opt = torch.optim.Adam([x], lr=0.05, betas=(0.5, 0.9))
        stats = BatchNormStatistics(teacher)

        def step():
            loss, _ = synth._objective(x, targets, stats)
            (x.grad,) = torch.autograd.grad(loss, [x])
            opt.step()
            with torch.no_grad():
                x.clamp_(0, 1)

        with stats:
            return timed(step, device, reps=args.reps)

    def fast_step(graphs: bool, adv_weight: float = 1.0) -> tuple[float, FastSynthesizer]:
        """One generator step of the fast synthesizer (BN statistics, CE, masked-KL adversary, Adam)."""
        synth = FastSynthesizer(batch_size=args.batch, g_steps=1, cuda_graphs=graphs, base_width=args.base_width,
                                adv_weight=adv_weight)
        synth.bind(teacher, student, 10, shape[1:], device)
        synth._new_round()
        student.eval()
        with synth._bn:
            t = timed(synth._step, device, reps=args.reps)
        student.train()
        return t, synth

    def student_step(graphs: bool) -> tuple[float, Distiller]:
        distiller = Distiller.from_options(teacher, student, NoiseSynthesizer(batch_size=args.batch), device=device, num_classes=10,
                                           input_size=shape[1:], batch_size=args.batch, replay=1.0,
                                           pool_capacity=20 * args.batch, loss=KDLoss(temperature=4.0),
                                           augment=Augment(flip=True, crop_padding=4), progress=False, cuda_graphs=graphs)
        distiller.source.pool.add(torch.rand(20 * args.batch, *shape[1:], device=device))  # replay 1: all from the bank
        return timed(distiller._update, device, reps=args.reps), distiller

    rows = [("teacher forward+backward to the input (plain)", timed(plain, device, reps=args.reps))]
    if cuda:
        rows.append(("  the same, one CUDA graph", timed(CapturedStep(plain, device), device, reps=args.reps)))
    rows += [("DeepInversion iteration (BN hooks, aug, TV, CE)", synth_step(0.0)),
             ("  + ADI competition term (student fwd+bwd)", synth_step(1.0))]
    t_fast_eager, _ = fast_step(graphs=False)
    rows.append(("fast generator step, eager", t_fast_eager))
    t_student_eager, _ = student_step(graphs=False)
    if cuda:
        t_fast, synth = fast_step(graphs=True)
        rows.append(("fast generator step, one CUDA graph", t_fast))
        # What the adversarial term (the student's forward and backward) costs: the same step without it.
        rows.append(("  the same without the adversarial term", fast_step(graphs=True, adv_weight=0.0)[0]))
    rows.append(("student KD step from the bank (crop+flip), eager", t_student_eager))
    if cuda:
        t_student, distiller = student_step(graphs=True)
        rows.append(("  the same, one CUDA graph", t_student))
    name = torch.cuda.get_device_name(device) if cuda else "CPU"
    print(f"device: {name}; torch {torch.__version__}; teacher {args.teacher}, student {args.student}, "
          f"batch {args.batch}, {args.size}x{args.size}, bf16 autocast, channels_last")
    reference = rows[0][1]
    graphed_reference = rows[1][1] if cuda else reference
    print(f"{'step':<52}{'ms':>9}{'x plain':>9}{'x plain graphed':>17}")
    for label, t in rows:
        print(f"{label:<52}{1000 * t:>9.2f}{t / reference:>9.2f}{t / graphed_reference:>17.2f}")
    if args.profile and cuda:
        def fast_round():  # half the recipe's round (20 generator steps, then 20 student steps): the same proportions
            student.eval()
            with synth._bn:
                for _ in range(10):
                    synth._step()
            student.train()
            for _ in range(10):
                distiller._update()

        share, top = kernel_share(fast_round, device, reps=5)
        print(f"fast round (10 graphed generator steps + 10 graphed student steps): GPU busy in kernels "
              f"{100 * share:.1f}% of wall time; costliest kernels (ms per round):")
        for kernel, ms in top:
            print(f"  {ms:8.2f}  {kernel[:110]}")


if __name__ == "__main__":
    main()
