"""Where a finished run's student is noisy: in its weights, or in its BatchNorm running statistics?

    python benchmarks/bn_recalibration.py RUN_DIR [--batches 200 [50 ...]] [--batch 512] [--device auto]

Run from the folder the run was started in (its recipe's data.root is read as it was given). A fast-recipe
student's own weights swung by up to 1.7 points between evaluations 20 s apart at the very end of a 10-minute run,
at a learning rate below 0.001, while the running average of its weights (trainer.ema_decay) held within 0.3
(docs/benchmarks.md, "The average of the weights"). Steps that small barely move the weights; the BatchNorm running
statistics, which eval mode reads and which follow the last ten or so training batches (momentum 0.1), may move
more. This evaluates, on the run's own test split, the weights (RUN_DIR/state_last.pt) and, where the run kept it,
their average (student.pt) twice each: as saved, and with every BatchNorm layer's statistics re-estimated as the
plain mean over BATCHES batches drawn from the run's replay bank with the run's augmentation (precise BatchNorm, as
SWA does for its average), once per count given (a column each: how many batches the estimate needs). If the
re-estimated weights score near the average, the swing was in the statistics.

It found more in the average than in the weights (a MobileNetV2's average 78.55% as saved, 87.45% re-estimated), so a
run now re-estimates its average's statistics itself before every evaluation (trainer.ema_bn_batches, 50 batches by
default): student.pt's "as saved" is then already re-estimated, at the run's last step; trainer.ema_bn_batches=0
keeps the averaged statistics, as the runs before it did.
"""
from __future__ import annotations

import argparse
import copy
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch import nn

from datafree.distill.averaging import reestimate_batchnorm
from datafree.distill.runs import load_distill_run
from datafree.evaluate import evaluate
from datafree.jobs import batches, load_split
from datafree.ops.pixels import dequantise
from datafree.recipe_nodes import instantiate_node
from datafree.synthesizers.augment import Augment
from datafree.teachers import load_teacher
from datafree.utils.device import network_layout, resolve_device


def reestimate(model: nn.Module, bank: torch.Tensor, augment: Augment, count: int, batch: int,
               device: torch.device, seed: int = 0) -> nn.Module:
    """A copy of ``model`` whose BatchNorm statistics are the plain mean over ``count`` augmented bank batches
    (the library's :func:`~datafree.distill.averaging.reestimate_batchnorm`, which a run applies to its average)."""
    model = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)

    def draws():
        for _ in range(count):
            picked = torch.randint(len(bank), (min(batch, len(bank)),), generator=generator)
            yield network_layout(augment(dequantise(bank[picked].to(device))), device)

    reestimate_batchnorm(model, draws(), device)
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--batches", type=int, nargs="+", default=[200],
                        help="bank batches for the re-estimate; several: one column each")
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    run = load_distill_run(args.run_dir)
    cfg = OmegaConf.create(run.config)
    if run.pool_images is None or not len(run.pool_images):
        raise SystemExit(f"{args.run_dir}: the run kept no replay bank to re-estimate the statistics on")
    bank = run.pool_images  # the filled part, in storage order (the order does not matter here)
    test_set = load_split(cfg.data, "test")
    if test_set is None:
        raise SystemExit(f"{args.run_dir}: its recipe has no test split (data={cfg.data.get('name')})")
    test = batches(test_set, cfg.data, device, train=False, seed=int(cfg.seed))
    saved = load_teacher("datafree", checkpoint=str(args.run_dir / "student.pt")).model.to(device)
    weights = copy.deepcopy(saved)
    run.load_student(weights)  # state_last.pt's student: the weights themselves
    averaged = bool(float((cfg.trainer.get("ema_decay") or 0.0)))
    augment = instantiate_node(cfg.trainer.augment, "trainer.augment").to(device)  # the run's own, as it built it
    augment.fit(tuple(bank.shape[-2:]))
    counts = ", ".join(str(n) for n in args.batches)
    print(f"{args.run_dir}: {len(bank):,} images in the bank; re-estimated over {counts} batches of {args.batch}; "
          f"{len(test_set):,} test images")
    print("| student | as saved | " + " | ".join(f"re-estimated over {n} batches" for n in args.batches) + " |")
    print("| --- | ---: |" + " ---: |" * len(args.batches))
    rows = [("the weights (state_last.pt)", weights)] + ([("their average (student.pt)", saved)] if averaged else [])
    for label, model in rows:
        model = network_layout(model, device)
        as_saved = evaluate(model, test, device)["accuracy"]
        again = [evaluate(reestimate(model, bank, augment, n, args.batch, device), test, device)["accuracy"]
                 for n in args.batches]
        print(f"| {label} | {as_saved:.2%} | " + " | ".join(f"{a:.2%}" for a in again) + " |")

if __name__ == "__main__":
    main()
