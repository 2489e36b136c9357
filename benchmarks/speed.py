"""Speed of datafree's hot paths as ratios to a plain teacher forward+backward, in one process.

    python benchmarks/speed.py [--teacher resnet34] [--student resnet18] [--batch 256]

Every figure is the mean over timed repetitions after warm-up, with the device
synchronised only around each timed block. Ratios, not seconds, are what to
compare across machines.
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from datafree.distill.trainer import Distiller
from datafree.models import create_model
from datafree.synthesizers import DeepInversion, NoiseSynthesizer
from datafree.synthesizers.hooks import BatchNormStatistics
from datafree.teachers import Normalized, freeze
from datafree.utils.device import autocast, resolve_device


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default="resnet34")
    parser.add_argument("--student", default="resnet18")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--reps", type=int, default=20, help="timed repetitions of each step")
    args = parser.parse_args()
    device = resolve_device(args.device)
    mean, std = (0.5,) * 3, (0.25,) * 3

    def net(name):
        model = Normalized(create_model(name, num_classes=10), mean, std).to(device)
        return model.to(memory_format=torch.channels_last) if device.type == "cuda" else model

    teacher, student = freeze(net(args.teacher)), net(args.student)
    shape = (args.batch, 3, args.size, args.size)
    pixels = torch.rand(shape, device=device, requires_grad=True)
    targets = torch.randint(10, (args.batch,), device=device)

    def plain():  # the reference: teacher forward + backward to the input, nothing else
        with autocast(device):
            loss = F.cross_entropy(teacher(pixels).float(), targets)
        torch.autograd.grad(loss, [pixels])

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

    noise = NoiseSynthesizer(batch_size=args.batch)
    distiller = Distiller.from_options(teacher, student, noise, device=device, num_classes=10, input_size=shape[1:],
                                       batch_size=args.batch, replay=0.5, pool_capacity=10 * args.batch, progress=False)
    distiller.pool.add(torch.rand(shape, device=device))
    fresh = torch.rand(shape, device=device)

    t_plain = timed(plain, device, reps=args.reps)
    t_di = synth_step(0.0)
    t_adi = synth_step(1.0)
    # The guarded step against the same step as before the NaN guard (a plain foreach SGD step, no finite
    # check), measured alternately and the fastest of three kept, so that drift on the machine hits both alike.
    plain_sgd = torch.optim.SGD(student.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True)
    guarded = distiller.guard.step
    student_times, unguarded_times = [], []
    for _ in range(3):
        distiller.guard.step = guarded
        student_times.append(timed(lambda: distiller._student_step(fresh), device, reps=args.reps))
        distiller.guard.step = lambda optimizer, loss, terms: plain_sgd.step()
        unguarded_times.append(timed(lambda: distiller._student_step(fresh), device, reps=args.reps))
    distiller.guard.step = guarded
    t_student, t_unguarded = min(student_times), min(unguarded_times)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {name}; teacher {args.teacher}, student {args.student}, batch {args.batch}, {args.size}x{args.size}")
    print(f"{'step':<48}{'ms':>9}{'x plain':>9}")
    for label, t in [
        ("teacher forward+backward to the input (plain)", t_plain),
        ("DeepInversion iteration (BN hooks, aug, TV, CE)", t_di),
        ("  + ADI competition term (student fwd+bwd)", t_adi),
        ("student KD step (teacher fwd, student fwd+bwd)", t_student),
        ("  same, plain SGD step without the NaN guard", t_unguarded),
    ]:
        print(f"{label:<48}{1000 * t:>9.2f}{t / t_plain:>9.2f}")


if __name__ == "__main__":
    main()
