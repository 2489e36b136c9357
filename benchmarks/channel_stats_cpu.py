"""Per-channel batch statistics on the CPU: ``var_mean`` over (N, H, W) against BatchNorm's own kernels.

    python benchmarks/channel_stats_cpu.py [--threads 1] [--rounds 6]

DeepInversion's prior takes each BatchNorm input's per-channel mean and variance at every teacher forward
(``datafree.ops.hooks.channel_stats``). This times three ways of computing them on the CPU, alternated in one
process, on NCHW and channels-last tensors of the demo's sizes and larger, and checks that they agree: ``var_mean``
(what channel_stats used), the kernel with which BatchNorm updates its running statistics
(``batch_norm_update_stats``, what it uses now) and training-mode BatchNorm itself (``native_batch_norm``, which
also writes the normalised output and gives the variance back as 1/sqrt(var + eps)).

Then whole DeepInversion batches (the demo's synthesizer: 64 images, here 20 iterations each) on the demo's teacher
network at 16 px and a zoo ResNet-18 at 32 px, in float32 as the CPU runs them, with channel_stats' forward set to
each way in turn, alternated round after round so that the machine's drift falls on both alike.
"""
from __future__ import annotations

import argparse
import time

import torch

from datafree.models import create_model
from datafree.ops import hooks
from datafree.synthesizers import DeepInversion

EPS = 1e-12
SHAPES = [(64, 16, 16, 16), (64, 32, 8, 8), (64, 64, 4, 4), (32, 3, 64, 64), (16, 64, 56, 56), (256, 64, 32, 32)]


def with_var_mean(x):
    var, mean = torch.var_mean(x, dim=[0, *range(2, x.dim())], correction=0)
    return mean, var


def with_update_stats(x):
    return torch.batch_norm_update_stats(x, None, None, 0.0)


def with_batch_norm(x):
    _, mean, invstd = torch.native_batch_norm(x, None, None, None, None, True, 0.0, EPS)
    return mean, invstd.pow(-2) - EPS


WAYS = {"var_mean": with_var_mean, "batch_norm_update_stats": with_update_stats, "native_batch_norm": with_batch_norm}


def channel_stats_by(way):
    """A forward for hooks._ChannelStats that computes the statistics ``way``, its backward left as it is."""
    def forward(ctx, x):
        mean, var = way(x.float())
        ctx.save_for_backward(x, mean)
        return mean, var
    return staticmethod(forward)


def seconds_per_batch(teacher: str, size: int, rounds: int) -> dict[str, float]:
    """Each way's mean seconds for one DeepInversion batch (64 images, 20 iterations), alternated round by round."""
    torch.manual_seed(0)
    net, student = create_model(teacher, num_classes=10).eval(), create_model("microcnn", num_classes=10)
    synthesizer = DeepInversion(batch_size=64, iterations=20, lr=0.1, bn_weight=1.0, tv_l2_weight=4e-3, adi_weight=1.0)
    synthesizer.bind(net, student, 10, (3, size, size), torch.device("cpu"))
    kept, spent = hooks._ChannelStats.forward, {name: [] for name in WAYS}
    try:
        for round_ in range(rounds + 1):  # the first round warms up
            for name, way in WAYS.items():
                hooks._ChannelStats.forward = channel_stats_by(way)
                start = time.perf_counter()
                synthesizer.synthesize()
                if round_:
                    spent[name].append(time.perf_counter() - start)
    finally:
        hooks._ChannelStats.forward = kept
    return {name: sum(times) / len(times) for name, times in spent.items()}


def ms_per_call(fn, x, reps: int) -> float:
    for _ in range(3):
        fn(x)
    start = time.perf_counter()
    for _ in range(reps):
        fn(x)
    return (time.perf_counter() - start) / reps * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (datafree's cpu_threads=auto: half the cores)")
    parser.add_argument("--reps", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=6, help="DeepInversion batches timed per way (a third for ResNet-18)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {args.threads} thread(s); ms per call, the faster of two alternated passes")
    print(f"| shape | layout | {' | '.join(WAYS)} | var_mean / batch_norm_update_stats |")
    print("| --- | --- |" + " ---: |" * (len(WAYS) + 1))
    for shape in SHAPES:
        for layout in (torch.contiguous_format, torch.channels_last):
            x = (torch.randn(*shape) * 3 + 5).contiguous(memory_format=layout)
            exact_mean, exact_var = (s.float() for s in with_var_mean(x.double()))
            for way in WAYS.values():  # within float32 accumulation error of float64's statistics
                mean, var = way(x)
                assert torch.allclose(mean, exact_mean, rtol=1e-4) and torch.allclose(var, exact_var, rtol=1e-4)
            times = {name: min(ms_per_call(way, x, args.reps) for _ in range(2)) for name, way in WAYS.items()}
            name = "channels-last" if layout is torch.channels_last else "NCHW"
            print(f"| {shape} | {name} | {' | '.join(f'{ms:.3f}' for ms in times.values())} | "
                  f"{times['var_mean'] / times['batch_norm_update_stats']:.1f}x |")
    print(f"\nOne DeepInversion batch (64 images, 20 iterations), seconds, mean of {args.rounds} alternated rounds "
          f"({max(1, args.rounds // 3)} for the ResNet-18: 30 s a batch here)")
    print(f"| teacher | {' | '.join(WAYS)} | var_mean / batch_norm_update_stats |")
    print("| --- |" + " ---: |" * (len(WAYS) + 1))
    for teacher, size, rounds in (("tinycnn", 16, args.rounds), ("resnet18", 32, max(1, args.rounds // 3))):
        times = seconds_per_batch(teacher, size, rounds)
        print(f"| {teacher}, {size} px | {' | '.join(f'{s:.3f}' for s in times.values())} | "
              f"{times['var_mean'] / times['batch_norm_update_stats']:.2f}x |")


if __name__ == "__main__":
    main()
