"""How good is one DeepInversion batch? Teacher confidence and class agreement per setting.

    python benchmarks/di_probe.py TEACHER.pt [--batch 512] [--iterations 200]

For each setting: seconds per batch, the final loss terms, how often the
teacher assigns the sampled class to the un-augmented images, its mean top
probability, and the mean entropy of its softmax at T=4 and T=20 (what the
student's KD target looks like). Settings are written as key=value lists.
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from datafree.models import create_model
from datafree.synthesizers import DeepInversion
from datafree.teachers import Normalized, freeze, load_classifier
from datafree.utils.device import resolve_device

SETTINGS = [
    "bn_weight=10 lr=0.1",
    "bn_weight=10 lr=0.05",
    "bn_weight=3 lr=0.05",
    "bn_weight=1 lr=0.05",
    "bn_weight=1 lr=0.1",
    "bn_weight=3 lr=0.05 adi_weight=1",
]


def parse(setting: str) -> dict:
    return {k: float(v) for k, v in (item.split("=") for item in setting.split())}


def entropy(logits: torch.Tensor, t: float) -> float:
    p = F.softmax(logits / t, dim=1)
    return float(-(p * p.clamp_min(1e-12).log()).sum(1).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("teacher")
    parser.add_argument("--student", default="resnet18")
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--settings", nargs="*", default=SETTINGS)
    args = parser.parse_args()
    device = resolve_device("auto")
    teacher, info = load_classifier(args.teacher, device=device)
    freeze(teacher)
    student = Normalized(create_model(args.student, num_classes=info.num_classes), info.mean, info.std).to(device)
    print(f"teacher {info.arch} ({info.test_accuracy}), batch {args.batch}, {args.iterations} iterations")
    print(f"{'setting':<36}{'s':>6}{'acc':>7}{'maxp':>7}{'H@4':>7}{'H@20':>7}  final losses")
    for setting in args.settings:
        torch.manual_seed(0)
        synth = DeepInversion(batch_size=args.batch, iterations=args.iterations, **parse(setting))
        synth.bind(teacher, student, info.num_classes, info.input_size, device)
        start = time.perf_counter()
        batch = synth.synthesize()
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        logits = batch.teacher_logits
        acc = float((logits.argmax(1) == batch.targets).float().mean())
        maxp = float(F.softmax(logits, 1).max(1).values.mean())
        losses = " ".join(f"{k}={float(v):.3g}" for k, v in synth.last_losses.items())
        print(f"{setting:<36}{seconds:>6.1f}{acc:>7.3f}{maxp:>7.3f}{entropy(logits, 4):>7.3f}{entropy(logits, 20):>7.3f}  {losses}")


if __name__ == "__main__":
    main()
