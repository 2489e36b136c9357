"""Does a student survive its first steps? The first round of a distill run, replayed on that run's own images.

    python benchmarks/first_steps.py TEACHER.pt RUN_DIR [--student torchvision:resnet18] [--lr 0.2] [--batch 512]
        [--warmup 0] [--steps 20] [--images 256] [--seed 0] [--threads 2]

A student whose last stage loses every activation (each ReLU's input below zero for every image) answers every image
with its classifier's bias, and no gradient reaches the layers before it again: a dead student, which its evaluation
shows as one class for every test image. This trains a fresh ``--student`` (a zoo name, torchvision:NAME or
timm:NAME, built for the teacher's task as distill builds it) for ``--steps`` Nesterov SGD steps (momentum 0.9,
weight decay 5e-4, KD at temperature 4: trainer=fast's student step, without its crop) on the newest ``--images``
synthetic images of RUN_DIR's saved replay pool (a distill run's folder holding state_last.pt), the learning rate
rising linearly over ``--warmup`` steps, and prints per step the KD loss and the share of the last stage's outputs
above zero (0: dead). On a GPU it runs there (no autocast); the figures in docs/benchmarks.md are from the CPU.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bn_scale import pool_images  # noqa: E402  (the newest images of a run's saved pool, through mmap)

from datafree.api import checked_student  # noqa: E402
from datafree.ops.divergences import kd_kl  # noqa: E402
from datafree.teachers import freeze, load_classifier  # noqa: E402


def last_stage(model: torch.nn.Module) -> torch.nn.Module:
    """The last module that holds children before the pooling and the classifier: a ResNet's layer4, a
    MobileNet's last block; the deepest feature map."""
    stages = [m for m in model.modules() if len(list(m.children())) > 0 and any(
        isinstance(c, torch.nn.Conv2d) for c in m.modules())]
    return stages[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("teacher")
    parser.add_argument("run_dir")
    parser.add_argument("--student", default="torchvision:resnet18")
    parser.add_argument("--lr", type=float, default=0.2)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--warmup", type=int, default=0)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    teacher, info = load_classifier(args.teacher, device=device)
    freeze(teacher)
    images = pool_images(args.run_dir, args.images).to(device).float().div_(255)
    with torch.no_grad():  # the teacher's answers once: the replay has no crop, so they do not change
        targets = torch.cat([teacher(chunk) for chunk in images.split(64)])
    torch.manual_seed(args.seed)
    student, _ = checked_student(args.student, info, device)
    student.train()
    stage = last_stage(student)
    seen: dict[str, torch.Tensor] = {}
    stage.register_forward_hook(lambda module, inputs, output: seen.__setitem__("out", output.detach()))
    optimizer = torch.optim.SGD(student.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4, nesterov=True)
    print(f"{info.arch} -> {args.student} on {images.shape[0]} images of {args.run_dir}; lr {args.lr:g}, batch "
          f"{args.batch}, warm-up {args.warmup} steps, on {device}")
    for step in range(args.steps):
        for group in optimizer.param_groups:
            group["lr"] = args.lr * (min(1.0, (step + 1) / args.warmup) if args.warmup else 1.0)
        pick = torch.randint(0, images.shape[0], (args.batch,), device=device)
        batch = images[pick]
        batch = torch.where(torch.rand(args.batch, 1, 1, 1, device=device) < 0.5, batch.flip(3), batch)
        loss = kd_kl(student(batch), targets[pick], 4.0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        live = (seen["out"] > 0).float().mean().item()
        print(f"step {step + 1:3d}  lr {optimizer.param_groups[0]['lr']:.3f}  KD loss {loss.item():8.3f}  "
              f"last stage > 0: {live:.3f}", flush=True)


if __name__ == "__main__":
    main()
