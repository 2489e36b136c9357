"""A student's training step in the two memory layouts, channels_last against contiguous (NCHW), on one GPU.

    python benchmarks/layout.py [--batch 256] [NET[@SIZE] ...]     NET: a zoo name, or tv:NAME for torchvision

datafree runs every network channels_last on a GPU. That suits dense convolutions (tensor cores read NHWC);
whether it suits networks made of depthwise convolutions (MobileNets) is what this measures: the step the
distillation trainer replays (bf16 autocast, forward, KD loss, backward, SGD with momentum), captured in one
CUDA graph as the trainer captures it, and the same network's forward+backward to its input in eval mode (what
the generator step asks of the student). Times are means over timed replays after warm-up; the ratio column
is contiguous / channels_last (above 1: channels_last is faster).
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from datafree.models import create_model
from speed import timed  # benchmarks/speed.py: warm-up, then the mean over timed calls, synchronised around them
from datafree.utils.graphs import CapturedStep, tensor_lr
from datafree.utils.nonfinite import fused_optimizer


def build(name: str) -> torch.nn.Module:
    if name.startswith("tv:"):
        import torchvision

        return torchvision.models.get_model(name[3:], weights=None, num_classes=10)
    return create_model(name, num_classes=10)


def steps(name: str, size: int, batch: int, layout: torch.memory_format, reps: int) -> tuple[float, float]:
    net = build(name).to("cuda").to(memory_format=layout)
    x = torch.rand(batch, 3, size, size, device="cuda").contiguous(memory_format=layout)
    soft = torch.softmax(torch.randn(batch, 10, device="cuda"), 1)
    opt = fused_optimizer("sgd", net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)  # the trainer's
    tensor_lr(opt)

    def train_step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = F.kl_div(F.log_softmax(net(x).float(), 1), soft, reduction="batchmean")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    net.train()
    t_train = timed(CapturedStep(train_step, torch.device("cuda")), torch.device("cuda"), reps=reps)
    pixels = x.detach().clone().requires_grad_(True)

    def input_grad():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = net(pixels).float().logsumexp(1).mean()
        return torch.autograd.grad(loss, [pixels])

    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    t_grad = timed(CapturedStep(input_grad, torch.device("cuda")), torch.device("cuda"), reps=reps)
    return t_train, t_grad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("nets", nargs="*", default=["resnet18@32", "mobilenetv2@32", "wrn16_2@32"])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--reps", type=int, default=30)
    args = parser.parse_args()
    torch.backends.cudnn.benchmark = True  # as datafree sets it on a GPU
    print(f"device: {torch.cuda.get_device_name()}; torch {torch.__version__}; batch {args.batch}; bf16 autocast; "
          "CUDA graphs; ms per step")
    print(f"{'network':<28}{'train NHWC':>11}{'train NCHW':>11}{'ratio':>7}{'in-grad NHWC':>13}{'in-grad NCHW':>13}{'ratio':>7}")
    for spec in args.nets:
        name, _, size = spec.partition("@")
        size = int(size or 32)
        last = steps(name, size, args.batch, torch.channels_last, args.reps)
        plain = steps(name, size, args.batch, torch.contiguous_format, args.reps)
        print(f"{spec:<28}{1e3 * last[0]:>11.2f}{1e3 * plain[0]:>11.2f}{plain[0] / last[0]:>7.2f}"
              f"{1e3 * last[1]:>13.2f}{1e3 * plain[1]:>13.2f}{plain[1] / last[1]:>7.2f}", flush=True)


if __name__ == "__main__":
    main()
