"""The arithmetic floor of the fast generator step, as a ratio to a plain teacher forward+backward.

    python benchmarks/flops.py [--teacher resnet34] [--student resnet18] [--latent-dim 256] [--base-width 64]

Counts floating-point operations per image (torch's FlopCounterMode: convolutions and
matrix products; the element-wise work of BatchNorm, ReLU and the statistics is not
counted) for what one generator step must compute: the teacher forward and backward to
its input, the student forward and backward to its input (the adversarial term), and the
generator forward and backward (its weights are trained). The reference is the teacher's
forward and backward to its input, as in benchmarks/speed.py. Any machine, seconds, no GPU:
a step cannot cost less than this ratio unless it skips part of that work.
"""
from __future__ import annotations

import argparse

import torch
from torch.utils.flop_counter import FlopCounterMode

from datafree.models import create_model


def flops_per_image(model: torch.nn.Module, inputs: torch.Tensor, train_weights: bool) -> float:
    """Forward + backward operations per image; frozen weights (backward to the input only) unless trained."""
    for p in model.parameters():
        p.requires_grad_(train_weights)
    if not train_weights:
        inputs = inputs.clone().requires_grad_(True)
    model.train(train_weights)
    with FlopCounterMode(display=False) as counter:
        model(inputs).float().sum().backward()
    return counter.get_total_flops() / len(inputs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default="resnet34")
    parser.add_argument("--student", default="resnet18")
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--latent-dim", type=int, default=256)  # recipes/synthesizer/fast.yaml
    parser.add_argument("--base-width", type=int, default=64)
    args = parser.parse_args()
    images = torch.rand(2, 3, args.image_size, args.image_size)
    teacher = flops_per_image(create_model(args.teacher, num_classes=args.num_classes), images, False)
    student = flops_per_image(create_model(args.student, num_classes=args.num_classes), images, False)
    generator = flops_per_image(create_model("dcgan_generator", latent_dim=args.latent_dim, base_width=args.base_width,
                                             image_size=args.image_size, channels=3, output_bn=False),
                                torch.randn(2, args.latent_dim), True)
    print(f"GFLOP per image, forward + backward: teacher {args.teacher} {teacher / 1e9:.3f} (to the input), "
          f"student {args.student} {student / 1e9:.3f} (to the input), generator (base width {args.base_width}) "
          f"{generator / 1e9:.3f} (weights trained)")
    print(f"generator step >= {(teacher + student + generator) / teacher:.2f} x the teacher's forward + backward "
          f"(student {student / teacher:.2f}, generator {generator / teacher:.2f}; without the adversarial term "
          f"{(teacher + generator) / teacher:.2f})")


if __name__ == "__main__":
    main()
