"""How long a fresh student's evaluations lag its weights, by BatchNorm momentum: the weights held fixed.

    python benchmarks/bn_lag.py [--student torchvision:mobilenet_v3_large] [--size 128] [--momenta 0.01 0.1]
        [--batches 0 50 100 200 400 600 800 1000] [--images 16] [--threads 2]

A network's running statistics start at mean 0 and variance 1; until they have come down to its activations'
own, eval mode (what distill's evaluations and the synthesizers' adversarial queries use) normalises by the wrong
scale and, through many layers, answers every image alike. This runs ``--student`` (a name as ``student=`` takes:
the zoo's, ``torchvision:NAME``, ``timm:NAME``; 10 classes) in training mode on one fixed batch of uniform noise
for the given numbers of batches at each momentum (``keep``: the network's own), and prints after each how far its
eval-mode logits move over the images, beside the same with exact statistics (one batch at momentum 1). Only the
running statistics change, as in a run whose weights stand still: a bound on the lag, not a training run.
"""
from __future__ import annotations

import argparse

import torch

from datafree.models.bn_momentum import set_bn_momentum
from datafree.teachers.students import build_student


def spread(logits: torch.Tensor) -> float:
    return float((logits.max(0).values - logits.min(0).values).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", default="torchvision:mobilenet_v3_large")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--momenta", nargs="+", default=["keep", "0.1"])
    parser.add_argument("--batches", nargs="+", type=int, default=[0, 50, 100, 200, 400, 600, 800, 1000])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    images = torch.rand(args.images, 3, args.size, args.size) * 4 - 2  # about a normalised image's range

    def fresh(setting):
        torch.manual_seed(1)  # the same weights for every momentum
        net, label = build_student(args.student, num_classes=10, in_channels=3)
        set_bn_momentum(net, setting if setting == "keep" else float(setting))
        return net, label

    net, label = fresh(1.0)
    with torch.no_grad():
        net.train()(images)
        exact = spread(net.eval()(images))
    print(f"{label} at {args.size} px, {args.images} noise images; eval-mode logit spread with exact statistics: "
          f"{exact:.3g}")
    for setting in args.momenta:
        net, _ = fresh(setting)
        done, row = 0, []
        with torch.no_grad():
            for n in sorted(args.batches):
                net.train()
                for _ in range(n - done):
                    net(images)
                done = n
                row.append(f"{n}: {spread(net.eval()(images)):.2g}")
        print(f"momentum {setting}: eval spread after N training-mode batches  " + "  ".join(row), flush=True)


if __name__ == "__main__":
    main()
