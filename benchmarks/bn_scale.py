"""How large is a teacher's BatchNorm-statistics distance, raw and relative, on real images and on noise?

    python benchmarks/bn_scale.py TEACHER.pt [TEACHER.pt ...] TEST_ARCHIVE [--images 512] [--weight 10]
        [--anchor TEACHER.pt ...] [--pool RUN_DIR]

The fast synthesizer's loss is bn_weight x this distance. The raw distance (DeepInversion's) carries the teacher's
own scale, so one bn_weight means different strengths on different teachers; the relative one is measured in the
teacher's running standard deviations. For each teacher this prints both distances for a sample of its real test
images (what a matched batch reaches) and for uniform noise (about where synthesis starts), their ratio, and the
three layers that dominate the raw distance on real images. With --anchor (repeatable: teachers of the kinds a raw
weight was tuned on), it also prints the relative weight that gives each anchor the same loss on real images as
--weight does raw (weight x raw / relative, measured on the anchor), and their geometric mean. With --pool (a distill
run's folder holding state_last.pt), it also measures the newest --images synthetic images of that run's replay pool,
what its student learned from, and lists the BatchNorm layers where they are furthest from the teacher's statistics
in relative units, beside the real images' distance at the same layers: where the generator falls short.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from datafree.data import load_tarball
from datafree.ops.hooks import BatchNormStatistics
from datafree.teachers import freeze, load_classifier
from datafree.utils.device import resolve_device


@torch.no_grad()
def distances(teacher, images: torch.Tensor) -> dict:
    out, per_layer = {}, {}
    for distance in BatchNormStatistics.DISTANCES:
        with BatchNormStatistics(teacher, distance=distance) as bn:
            teacher(images)
            out[distance] = float(bn.loss())
            per_layer[distance] = [float(v) for v in bn._losses]
    names = {id(m): n for n, m in teacher.named_modules()}
    out["names"] = [names[id(m)] for m in bn.layers]
    top = sorted(zip(per_layer["raw"], out["names"]), reverse=True)[:3]
    out["top"] = ", ".join(f"{n} {v:.3g}" for v, n in top)
    out["layers"] = len(per_layer["raw"])
    out["relative_layers"] = per_layer["relative"]
    return out


def pool_images(run_dir: str, count: int) -> torch.Tensor:
    """The newest ``count`` images of a distill run's saved replay pool (a ring: the newest end before ``next``),
    as uint8; the state file is mapped, not read whole (it holds the entire pool)."""
    state = torch.load(Path(run_dir) / "state_last.pt", map_location="cpu", weights_only=True, mmap=True)
    pool = state["pool"]
    size, end = int(pool["size"]), int(pool["next"])
    if size == 0:
        raise SystemExit(f"{run_dir}: the saved replay pool is empty")
    return pool["images"][torch.arange(end - min(count, size), end) % size]


def measure(path: str, archive: str, count: int, device: torch.device, pool: torch.Tensor | None) -> dict:
    teacher, info = load_classifier(path, device=device)
    freeze(teacher)
    test = load_tarball(archive, image_size=info.input_size[-1]).sample(count, seed=0)
    real = test.images.to(device).float().div_(255)
    torch.manual_seed(0)
    noise = torch.rand_like(real)
    row = {"teacher": f"{info.arch} {info.input_size[-1]}px ({info.test_accuracy})",
           "real": distances(teacher, real), "noise": distances(teacher, noise)}
    if pool is not None:
        if tuple(pool.shape[1:]) != tuple(info.input_size):
            raise SystemExit(f"the pool's images are {tuple(pool.shape[1:])}, the teacher {path} takes "
                             f"{tuple(info.input_size)}: give the teacher of that run")
        row["pool"] = distances(teacher, pool.to(device).float().div_(255))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("teachers", nargs="+", help="teacher checkpoints, then the test archive (.tar.gz) last")
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--weight", type=float, default=10.0, help="the raw bn_weight tuned on the anchor")
    parser.add_argument("--anchor", action="append", default=[],
                        help="a teacher of a kind the raw weight was tuned on (one of the teachers; repeatable)")
    parser.add_argument("--pool", help="a distill run's folder: also measure its newest synthetic images")
    args = parser.parse_args()
    *paths, archive = args.teachers
    device = resolve_device("auto")
    pool = pool_images(args.pool, args.images) if args.pool else None
    rows = {path: measure(path, archive, args.images, device, pool) for path in paths}
    print(f"{'teacher':<44}{'layers':>7}{'raw real':>10}{'rel real':>10}{'raw noise':>11}{'rel noise':>11}"
          f"{'raw/rel real':>14}  largest raw layers (real)")
    for path, row in rows.items():
        real, noise = row["real"], row["noise"]
        print(f"{row['teacher']:<44}{real['layers']:>7}{real['raw']:>10.3g}{real['relative']:>10.3g}"
              f"{noise['raw']:>11.3g}{noise['relative']:>11.3g}{real['raw'] / real['relative']:>14.3g}  {real['top']}")
    for row in rows.values():
        if "pool" not in row:
            continue
        real, noise, synthetic = row["real"], row["noise"], row["pool"]
        print(f"{row['teacher']}: synthetic images of {args.pool}: raw {synthetic['raw']:.3g}, relative "
              f"{synthetic['relative']:.3g} (real {real['relative']:.3g}, noise {noise['relative']:.3g})")
        print("  furthest layers, relative distance: synthetic / real / noise")
        furthest = sorted(range(len(synthetic["names"])), key=lambda i: -synthetic["relative_layers"][i])[:8]
        for i in furthest:
            print(f"  {synthetic['names'][i]:<40}{synthetic['relative_layers'][i]:>9.3g}"
                  f"{real['relative_layers'][i]:>9.3g}{noise['relative_layers'][i]:>9.3g}")
    matches = []
    for anchor in args.anchor:
        real = rows[anchor]["real"]
        matches.append(args.weight * real["raw"] / real["relative"])
        print(f"relative weight matching bn_weight {args.weight:g} raw on {rows[anchor]['teacher']}: {matches[-1]:.3g}")
    if matches:
        print(f"relative weight, geometric mean of the anchors: {math.prod(matches) ** (1 / len(matches)):.3g}")


if __name__ == "__main__":
    main()
