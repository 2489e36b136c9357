"""What a finished distill run's replay bank holds, by the age of its images: does the generator's later work differ?

    python benchmarks/bank_probe.py RUN_DIR [--groups 10] [--batch 1000] [--device auto]

A fast-recipe student trains on its whole bank (replay 1.0, drawn uniformly), so images made late in the
generator's game with the student weigh as much as early ones. This reads the run's full state (RUN_DIR/
state_last.pt: the bank in the order it was filled), its teacher (the run's teacher.checkpoint, or the teacher.pt
it trained) and its student (RUN_DIR/student.pt), splits the bank into GROUPS by age (oldest first) and gives for
each: the teacher's mean confidence (top softmax probability), the share of the group in its most frequent class
(by the teacher), the student's agreement with the teacher, and the teacher's BatchNorm distance on the group's
batches (relative: in the teacher's own standard deviations, the recipe's prior; lower is closer to the teacher's
training statistics).
Written for docs/benchmarks.md ("Each pair alone for 10 minutes", Next), to compare a run alone with a shorter one.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from datafree.distill.runs import load_distill_run
from datafree.ops.hooks import BatchNormStatistics, batchnorm_layers
from datafree.teachers import load_teacher
from datafree.utils.device import autocast, network_layout, resolve_device


def teacher_path(config: dict, run_dir: Path) -> Path:
    """The run's teacher: its recipe's teacher.checkpoint, else the teacher.pt it trained."""
    given = (config.get("teacher") or {}).get("checkpoint")
    return Path(given) if given else run_dir / "teacher.pt"


@torch.no_grad()
def probe(images: torch.Tensor, teacher: torch.nn.Module, student: torch.nn.Module, device: torch.device,
          batch: int) -> dict[str, float]:
    """One age group's figures (see the module's docstring)."""
    confidence, agree, count, distance, batches = 0.0, 0, 0, 0.0, 0
    votes = None
    has_bn = bool(batchnorm_layers(teacher))
    for start in range(0, len(images), batch):
        x = network_layout(images[start:start + batch].to(device).float().div(255), device)
        with autocast(device):
            if has_bn:
                with BatchNormStatistics(teacher, distance="relative") as stats:
                    t = teacher(x).float()
                    distance += float(stats.loss())
            else:
                t = teacher(x).float()
            s = student(x).float()
        p = t.softmax(1)
        confidence += float(p.max(1).values.sum())
        labels = t.argmax(1)
        agree += int((s.argmax(1) == labels).sum())
        votes = torch.bincount(labels, minlength=t.shape[1]) + (0 if votes is None else votes)
        count += len(x)
        batches += 1
    return {"confidence": confidence / count, "top_class_share": float(votes.max()) / count,
            "agreement": agree / count, "bn_distance": distance / batches if has_bn else float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--groups", type=int, default=10)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    run = load_distill_run(args.run_dir)
    teacher = load_teacher("datafree", checkpoint=str(teacher_path(run.config, args.run_dir))).model.to(device).eval()
    student = load_teacher("datafree", checkpoint=str(args.run_dir / "student.pt")).model.to(device).eval()
    teacher, student = network_layout(teacher, device), network_layout(student, device)
    bank = run.pool_by_age()
    del run
    print(f"{args.run_dir}: {len(bank):,} images in the bank, {args.groups} groups by age (oldest first)")
    print("| group | images | teacher confidence | top class share | student agreement | BatchNorm distance (relative) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for k, group in enumerate(torch.tensor_split(bank, args.groups)):
        f = probe(group, teacher, student, device, args.batch)
        print(f"| {k + 1} | {len(group):,} | {f['confidence']:.3f} | {f['top_class_share']:.3f} | "
              f"{f['agreement']:.3f} | {f['bn_distance']:.3g} |")


if __name__ == "__main__":
    main()
