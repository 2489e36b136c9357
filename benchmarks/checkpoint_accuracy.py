"""A datafree checkpoint's test accuracy in float32 on the CPU (no autocast), on a tarball data set's test split.

    python benchmarks/checkpoint_accuracy.py CHECKPOINT DATA_DIR [--size 128] [--threads 2]

DATA_DIR holds test.tar.gz (data=cifar10_jpeg's layout). Used to check a teacher carried in half precision against
what the GPU runs (bf16 evaluation) measured: docs/benchmarks.md, "Three seeds".
"""
from __future__ import annotations

import argparse
import time

import torch

import datafree
from datafree.data import build_dataset
from datafree.evaluate import evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("data_dir")
    parser.add_argument("--size", type=int, default=None, help="data.image_size (default: the images' own)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    test = build_dataset(kind="tarball", split="test", root=args.data_dir, image_size=args.size)
    model = datafree.load_teacher("datafree", checkpoint=args.checkpoint).model
    batches = [(test.images[i:i + 250].float() / 255, test.labels[i:i + 250]) for i in range(0, len(test.images), 250)]
    started = time.perf_counter()
    accuracy = evaluate(model, batches, torch.device("cpu"), amp=False)["accuracy"]  # float32: no autocast
    print(f"{args.checkpoint}: float32 CPU test accuracy {accuracy:.4f} on {len(test.images)} images "
          f"({time.perf_counter() - started:.0f} s, {args.threads} threads)")

if __name__ == "__main__":
    main()
