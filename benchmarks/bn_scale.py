"""How large is a teacher's BatchNorm-statistics distance, raw and relative, on real images and on noise?

    python benchmarks/bn_scale.py TEACHER.pt [TEACHER.pt ...] TEST_ARCHIVE [--images 512] [--weight 10]
        [--anchor TEACHER.pt ...]

The fast synthesizer's loss is bn_weight x this distance. The raw distance (DeepInversion's) carries the teacher's
own scale, so one bn_weight means different strengths on different teachers; the relative one is measured in the
teacher's running standard deviations. For each teacher this prints both distances for a sample of its real test
images (what a matched batch reaches) and for uniform noise (about where synthesis starts), their ratio, and the
three layers that dominate the raw distance on real images. With --anchor (repeatable: teachers of the kinds a raw
weight was tuned on), it also prints the relative weight that gives each anchor the same loss on real images as
--weight does raw (weight x raw / relative, measured on the anchor), and their geometric mean.
"""
from __future__ import annotations

import argparse
import math

import torch

from datafree.data import load_tarball
from datafree.ops.hooks import BatchNormStatistics
from datafree.teachers import freeze, load_classifier
from datafree.utils.device import resolve_device


@torch.no_grad()
def distances(teacher, images: torch.Tensor) -> dict[str, float]:
    out = {}
    for distance in BatchNormStatistics.DISTANCES:
        with BatchNormStatistics(teacher, distance=distance) as bn:
            teacher(images)
            out[distance] = float(bn.loss())
            if distance == "raw":
                per_layer = [float(v) for v in bn._losses]
    names = {id(m): n for n, m in teacher.named_modules()}
    top = sorted(zip(per_layer, (names[id(m)] for m in bn.layers)), reverse=True)[:3]
    out["top"] = ", ".join(f"{n} {v:.3g}" for v, n in top)
    out["layers"] = len(per_layer)
    return out


def measure(path: str, archive: str, count: int, device: torch.device) -> dict:
    teacher, info = load_classifier(path, device=device)
    freeze(teacher)
    test = load_tarball(archive, image_size=info.input_size[-1]).sample(count, seed=0)
    real = test.images.to(device).float().div_(255)
    torch.manual_seed(0)
    noise = torch.rand_like(real)
    return {"teacher": f"{info.arch} {info.input_size[-1]}px ({info.test_accuracy})",
            "real": distances(teacher, real), "noise": distances(teacher, noise)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("teachers", nargs="+", help="teacher checkpoints, then the test archive (.tar.gz) last")
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--weight", type=float, default=10.0, help="the raw bn_weight tuned on the anchor")
    parser.add_argument("--anchor", action="append", default=[],
                        help="a teacher of a kind the raw weight was tuned on (one of the teachers; repeatable)")
    args = parser.parse_args()
    *paths, archive = args.teachers
    device = resolve_device("auto")
    rows = {path: measure(path, archive, args.images, device) for path in paths}
    print(f"{'teacher':<44}{'layers':>7}{'raw real':>10}{'rel real':>10}{'raw noise':>11}{'rel noise':>11}"
          f"{'raw/rel real':>14}  largest raw layers (real)")
    for path, row in rows.items():
        real, noise = row["real"], row["noise"]
        print(f"{row['teacher']:<44}{real['layers']:>7}{real['raw']:>10.3g}{real['relative']:>10.3g}"
              f"{noise['raw']:>11.3g}{noise['relative']:>11.3g}{real['raw'] / real['relative']:>14.3g}  {real['top']}")
    matches = []
    for anchor in args.anchor:
        real = rows[anchor]["real"]
        matches.append(args.weight * real["raw"] / real["relative"])
        print(f"relative weight matching bn_weight {args.weight:g} raw on {rows[anchor]['teacher']}: {matches[-1]:.3g}")
    if matches:
        print(f"relative weight, geometric mean of the anchors: {math.prod(matches) ** (1 / len(matches)):.3g}")


if __name__ == "__main__":
    main()
