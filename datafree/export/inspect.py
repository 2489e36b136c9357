"""``datafree inspect PATH``: what a synthetic data set is, whether its files match the manifest, what it looks like.

Exit status 0 when every file matches its checksum, 1 when some do not (listed), 2 when
PATH is not a synthetic data set.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from datafree.errors import DatafreeError
from datafree.export.manifest import unlisted_files
from datafree.export.pictures import bar_chart, class_grid
from datafree.export.reader import SyntheticSet
from datafree.help import HELP


def summary(synthetic: SyntheticSet) -> str:
    """The manifest in a few lines."""
    m = synthetic.manifest
    c, h, w = synthetic.image_shape
    state = "complete" if synthetic.complete else f"INCOMPLETE: {len(synthetic)} of {m['n']} samples written"
    teacher = m["teacher"]
    accuracy = teacher.get("test_accuracy")
    synth = m.get("synthesizer") or {}
    target = str(synth.get("_target_", "?")).rsplit(".", 1)[-1]
    settings = ", ".join(f"{k} {synth[k]}" for k in ("batch_size", "iterations", "g_steps") if k in synth)
    total = sum(int(f["bytes"]) for f in m["files"].values())
    storage = [f"{len(m['shards'])} shard{'s' if len(m['shards']) != 1 else ''}"] if m["shards"] else []
    if m.get("imagefolder"):
        storage.append(f"ImageFolder of PNGs under {m['imagefolder']['root']}/")
    counts = synthetic.class_counts()
    target_counts = m["class_counts"].get("target")
    wanted = "balanced" if m["class_counts"].get("requested") == "balanced" else m["class_counts"].get("requested")
    per_class = ", ".join(f"{name} {count}" for name, count in zip(synthetic.classes, counts))
    rate = f", {m['count'] / m['wall_time_s']:.1f} samples/s" if m.get("wall_time_s") else ""
    lines = [
        f"synthetic data set {synthetic.folder} ({state})",
        f"  samples      {len(synthetic)} of {c}x{h}x{w} images, {synthetic.num_classes} classes; "
        f"{' + '.join(storage) or 'no files'}, {total / 1e6:.2f} MB",
        f"  teacher      {teacher.get('arch')} (sha256 {str(teacher.get('sha256'))[:16]}...)"
        + (f", test accuracy {100 * accuracy:.2f}%" if accuracy is not None else ""),
        f"  synthesizer  {target}{f' ({settings})' if settings else ''}, draw={m.get('draw')}, seed {m.get('seed')}",
        f"  classes      {per_class}" + (f"  (asked: {wanted})" if target_counts is not None or wanted else ""),
        f"  written      {m.get('created')} .. {m.get('updated')} by datafree {m.get('datafree')}: "
        f"{m.get('wall_time_s', 0):.1f}s{rate}, {m.get('drawn')} images drawn",
    ]
    return "\n".join(lines)


def examples_per_class(synthetic: SyntheticSet, per_class: int) -> list[torch.Tensor]:
    """Up to ``per_class`` images of every class, the first ones in index order; damaged parts are skipped."""
    found: list[list[torch.Tensor]] = [[] for _ in range(synthetic.num_classes)]
    have = [0] * synthetic.num_classes
    parts = synthetic.parts()
    while min(have) < per_class:
        try:
            part = next(parts)
        except StopIteration:
            break
        except DatafreeError:  # a damaged shard: the checksum report names it; the pictures use the rest
            continue
        for k in range(synthetic.num_classes):
            if have[k] < per_class:
                chosen = (part.labels == k).nonzero().reshape(-1)[: per_class - have[k]]
                found[k].append(part.images[chosen])
                have[k] += int(chosen.numel())
    shape = synthetic.image_shape
    return [torch.cat(f) if f else torch.empty(0, *shape, dtype=torch.uint8) for f in found]


def parser() -> argparse.ArgumentParser:
    """The flags; what they mean is datafree.help's (``datafree inspect --help``)."""
    flags = argparse.ArgumentParser(prog="datafree inspect", usage=f"datafree inspect {HELP['inspect'].usage}", add_help=False)
    flags.add_argument("path")
    flags.add_argument("--out")
    flags.add_argument("--per-class", type=int, default=8)
    flags.add_argument("--no-pictures", action="store_true")
    return flags


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.per_class < 1:
        raise DatafreeError(f"--per-class must be >= 1, got {args.per_class}.")
    synthetic = SyntheticSet(args.path)
    print(summary(synthetic))
    problems = synthetic.verify()
    files = len(synthetic.manifest["files"])
    if problems:
        print(f"checksums: {len(problems)} of {files} files do NOT match the manifest:")
        for problem in problems:
            print(f"  {problem}")
        print("  restore them from the copy you received, or write the set again with its datafree synthesize command "
              "(an unfinished run writes damaged shards again)")
    else:
        print(f"checksums: all {files} files match the manifest")
    extra = unlisted_files(synthetic.folder, synthetic.manifest)
    if extra:
        print(f"note: {len(extra)} files are not in the manifest and not part of the set: {', '.join(extra[:5])}"
              f"{', ...' if len(extra) > 5 else ''}")
    if not args.no_pictures:
        out = Path(args.out) if args.out else Path("outputs") / "inspect" / synthetic.folder.resolve().name
        grid = class_grid(examples_per_class(synthetic, args.per_class), synthetic.classes, out / "samples_per_class.png",
                          title=f"{synthetic.folder.name}: {args.per_class} samples per class (teacher's label)")
        chart = bar_chart(synthetic.class_counts(), synthetic.classes, out / "class_histogram.png",
                          title=f"{synthetic.folder.name}: samples per class ({len(synthetic)} in all)")
        print(f"pictures: {grid}, {chart}")
    return 1 if problems else 0
