"""Synthesis throughput and peak GPU memory with an ImageNet-size teacher, in one process.

    python benchmarks/large_teacher.py [--teacher resnet50] [--student resnet18] [--size 224]
        [--methods deepinversion,dfad,dafl,zskt,dfq,fast] [--batches 256,128,64,32,16,8] [--rounds 5]

The teacher and student are torchvision networks with random weights (built here, nothing is
downloaded; BatchNorm running statistics are set to mean 0 / variance 1 with a few forward passes on
noise, so the BN-statistics losses have targets to match). Each method is its own synthesizer recipe
(``recipes/synthesizer/<method>.yaml``, with the teacher's 1000 classes and size), bound as ``datafree
distill`` binds it. For each method the largest batch of ``--batches`` whose synthesis round fits in GPU
memory is kept ("the batch that fits"); then ``--rounds`` rounds are timed after one warm-up round:

* generator methods and the fast synthesizer: a round is ``g_steps`` generator updates and one batch;
  images/s = batch / round time;
* DeepInversion: a round is the recipe's ``iterations`` pixel updates of one batch, far too long to time
  whole; ``--di-iterations`` (20) updates are timed and the rate scaled to the recipe's iterations:
  images/s = batch / (iterations x time per update).

Prints one CSV row per method: method, batch, round_s, images_per_s, peak_memory_gb, note. The
student's own steps are not included: synthesis is what grows with the teacher. ``--device cpu`` runs
the same code at any size as a smoke test (no memory figure, OOM never happens there).
"""
from __future__ import annotations

import argparse
import time

import torch
from hydra import compose
from hydra.utils import instantiate

from datafree.cli import recipes_context
from datafree.teachers import Normalized, freeze
from datafree.utils.device import resolve_device

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def network(name: str, size: int, device: torch.device) -> torch.nn.Module:
    import torchvision

    net = torchvision.models.get_model(name, weights=None, num_classes=1000)
    model = Normalized(net, *IMAGENET).to(device).to(memory_format=torch.channels_last)
    with torch.no_grad():  # BatchNorm running statistics of a network that has seen inputs
        model.train()
        for _ in range(3):
            model(torch.rand(8, 3, size, size, device=device))
    return model


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def synthesizer(method: str, size: int, batch: int, iterations: int | None):
    overrides = [f"synthesizer={method}", "data.num_classes=1000", f"data.image_size={size}",
                 f"synthesizer.batch_size={batch}"]
    if iterations is not None:
        overrides.append(f"synthesizer.iterations={iterations}")
    with recipes_context():
        cfg = compose("distill", overrides=overrides)
    return instantiate(cfg.synthesizer), cfg.synthesizer


def measure(method: str, teacher, student, size: int, batch: int, rounds: int, di_iterations: int,
            device: torch.device) -> dict:
    deepinversion = method in ("deepinversion", "adi")
    synth, node = synthesizer(method, size, batch, di_iterations if deepinversion else None)
    synth.bind(teacher, student, 1000, (3, size, size), device)
    synth.synthesize()  # warm-up: cuDNN's algorithm search, CUDA graph capture, Adam's state
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(rounds):
        synth.synthesize()
    synchronize(device)
    round_s = (time.perf_counter() - start) / rounds
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    if deepinversion:
        recipe_iterations = int(compose_iterations(method))
        per_update = round_s / di_iterations
        return {"round_s": per_update * recipe_iterations, "images_per_s": batch / (per_update * recipe_iterations),
                "peak": peak, "note": f"{di_iterations} of the recipe's {recipe_iterations} iterations timed"}
    return {"round_s": round_s, "images_per_s": batch / round_s, "peak": peak,
            "note": f"g_steps {node.get('g_steps')}"}


def compose_iterations(method: str) -> int:
    with recipes_context():
        return compose("distill", overrides=[f"synthesizer={method}"]).synthesizer.iterations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default="resnet50")
    parser.add_argument("--student", default="resnet18")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--methods", default="deepinversion,dfad,dafl,zskt,dfq,fast")
    parser.add_argument("--batches", default="256,128,64,32,16,8")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--di-iterations", type=int, default=20)
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    device = resolve_device(args.device)
    torch.manual_seed(0)
    teacher = freeze(network(args.teacher, args.size, device))
    student = network(args.student, args.size, device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (smoke run)"
    print(f"# {name}, torch {torch.__version__}: teacher {args.teacher}, student {args.student}, {args.size} px, "
          "random weights")
    print("method,batch,round_s,images_per_s,peak_memory_gb,note")
    for method in args.methods.split(","):
        for batch in (int(b) for b in args.batches.split(",")):
            try:
                result = measure(method, teacher, student, args.size, batch, args.rounds, args.di_iterations, device)
            except torch.OutOfMemoryError:
                torch.cuda.empty_cache()
                continue  # the next, smaller batch
            print(f"{method},{batch},{result['round_s']:.3f},{result['images_per_s']:.4g},{result['peak']:.1f},"
                  f"\"{result['note']}\"", flush=True)
            break
        else:
            print(f"{method},,,,,\"no batch of {args.batches} fits\"", flush=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
