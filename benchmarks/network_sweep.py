"""Which torchvision and timm networks datafree builds and runs at a given input size and channel count.

Each torchvision classification model, or one small model of each timm family (module), is built as datafree
builds a student for a teacher (models/sources.py: the teacher's classes, channels and size), then run forward on
a few random images in training and in evaluation mode; one line each says whether both gave a tensor of logits.
Networks over --max-params million parameters are built but not run. CPU only, one thread. From the repository root:
    python benchmarks/network_sweep.py --source timm --size 64 --channels 1 > benchmarks/results/network_sweep/timm_64_grey.txt
"""
from __future__ import annotations

import argparse
import time
import warnings

import torch

from datafree.models.sources import build_network, on_meta_device, takes_image_size

# timm: the first name holding one of these in a family is taken as its small member.
SMALL = ("atto", "femto", "pico", "nano", "tiny", "small", "xxs", "xs", "_s", "b0", "_t", "18", "lite0", "050", "100")


def timm_names() -> list[str]:
    import timm

    names = []
    for module in timm.list_modules():
        models = timm.list_models(module=module)
        if models:
            names.append(next((sorted((m for m in models if key in m), key=len)[0] for key in SMALL
                               if any(key in m for m in models)), sorted(models, key=len)[0]))
    return names


def torchvision_names() -> list[str]:
    import torchvision

    return torchvision.models.list_models(module=torchvision.models)


def outcome(net: torch.nn.Module, x: torch.Tensor, classes: int) -> str:
    for mode in ("train", "eval"):
        net.train(mode == "train")
        try:
            with torch.no_grad():
                y = net(x)
        except Exception as exc:  # noqa: BLE001 - the point is which networks fail, and how
            said = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else "(no message)"
            return f"fails in {mode} mode: {type(exc).__name__}: {said}"
        if not isinstance(y, torch.Tensor) or tuple(y.shape) != (x.shape[0], classes):
            return f"{mode} mode gives a {type(y).__name__}, not logits"
    return "runs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", choices=("torchvision", "timm"), required=True)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--classes", type=int, default=3)
    parser.add_argument("--max-params", type=float, default=120.0, help="millions; larger networks are not run")
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    names = torchvision_names() if args.source == "torchvision" else timm_names()
    x = torch.rand(4, args.channels, args.size, args.size, generator=torch.Generator().manual_seed(0))
    counts: dict[str, int] = {}
    print(f"{args.source}, {args.size}x{args.size}, {args.channels} channel(s), {args.classes} classes; torch "
          f"{torch.__version__}")
    for name in names:
        started = time.perf_counter()
        try:
            params = sum(p.numel() for p in on_meta_device(lambda: build_network(  # noqa: B023 - called at once
                args.source, name=name, num_classes=args.classes, in_channels=args.channels,
                image_size=(args.size, args.size)))[0].parameters()) / 1e6
            if params > args.max_params:
                result = f"not run ({params:.0f}M parameters)"
            else:
                net, _ = build_network(args.source, name=name, num_classes=args.classes, in_channels=args.channels,
                                       image_size=(args.size, args.size))
                result = outcome(net, x, args.classes)
        except Exception as exc:  # noqa: BLE001 - datafree's own refusal (DatafreeError) or the network's
            result = f"not built: {str(exc).strip().splitlines()[0][:160]}"
        kind = result.split(":")[0].split(" (")[0]
        counts[kind] = counts.get(kind, 0) + 1
        sized = " [built for the size]" if takes_image_size(args.source, name) else ""
        print(f"{name}{sized}: {result} ({time.perf_counter() - started:.1f}s)", flush=True)
    print("in all: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items(), key=lambda kv: -kv[1])))


if __name__ == "__main__":
    main()
