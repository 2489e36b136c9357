"""``datafree <command> --help``: what the command does, its main keys, two examples.

The full configuration stays one flag away (``--cfg job``). tests/test_help.py composes every
key and example named here (and parses inspect's), so that the help cannot name a key that is gone.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CommandHelp:
    purpose: str                   # what the command does and writes, a few lines
    keys: tuple[tuple[str, str], ...]  # (key=VALUE, what it sets); inspect: its flags
    examples: tuple[str, ...]      # the arguments after ``datafree <command>``
    usage: str = "[key=value ...]"


RUN_KEYS = (
    ("device=auto", "auto | cpu | cuda | cuda:N"),
    ("hydra.run.dir=DIR", "the run folder (default outputs/{command}/<date>_<time>)"),
)

HELP: dict[str, CommandHelp] = {
    "train-teacher": CommandHelp(
        "train (or fine-tune) a network on labelled real data, as a teacher to distil.\n"
        "Writes teacher.pt (a datafree checkpoint), summary.csv and the full state (state_last.pt) to the run folder.",
        (("teacher=NAME", "the network: tinycnn_shapes (the demo's), resnet34, ..., or torchvision | timm | module"),
         ("teacher.checkpoint=PATH", "weights to start from (fine-tuning; a head for other classes starts fresh)"),
         ("data=NAME", "the labelled data: shapes (generated), cifar10, cifar100, imagefolder (data.root=DIR)"),
         ("data.download=BOOL", "cifar10 / cifar100: download the data set when it is missing"),
         ("teacher.train.epochs=N", "training epochs (teacher.train.time_budget_s=S: stop by the clock)"),
         ("teacher.train.lr=X", "the learning rate; auto: 0.2 per 512 images of the batch (all but the demo's teacher)"),
         ("experiment=NAME", "a complete setting, e.g. cifar10_resnet34_resnet18"),
         ("resume=RUN_DIR", "continue a stopped run in its folder"),
         *RUN_KEYS),
        ("hydra.run.dir=outputs/teacher",
         "experiment=cifar10_resnet34_resnet18 data.download=true"),
    ),
    "distill": CommandHelp(
        "distil a teacher into a smaller student on synthetic images, with no training data.\n"
        "Writes student.pt, samples.png, summary.csv and the full state to the run folder. With no keys it runs\n"
        "the CPU demo: a shapes teacher trained first, then distilled, against a student distilled on noise.",
        (("teacher.checkpoint=PATH", "the teacher (teacher=module | torchvision | timm | torchscript | ensemble)"),
         ("student=NAME", "the student: microcnn, resnet18, ..., or torchvision | timm | module (student.name=...)"),
         ("synthesizer=NAME", "how inputs are made: deepinversion, adi, dafl, dfad, zskt, dfq, fast, noise, "
                              "images (yours: not data-free)"),
         ("data=NAME", "the held-out test set: shapes, cifar10, imagefolder, none; data=synthetic: a stored set"),
         ("trainer.rounds=N", "synthesis rounds (trainer.time_budget_s=S: stop by the clock)"),
         ("experiment=NAME", "a complete setting, e.g. cifar10_resnet34_resnet18"),
         ("resume=RUN_DIR", "continue a stopped run in its folder"),
         *RUN_KEYS),
        ("", "experiment=fast teacher.checkpoint=outputs/teacher/teacher.pt student=torchvision "
             "student.name=mobilenet_v3_large"),
    ),
    "synthesize": CommandHelp(
        "write a synthetic data set labelled by the teacher, to share or to distil from.\n"
        "Writes shard files (and/or PNGs) and a manifest.json of checksums to the folder out; the same command\n"
        "started again continues a stopped run after its last complete shard.",
        (("teacher.checkpoint=PATH", "the teacher (teacher=module | torchvision | timm | torchscript | ensemble)"),
         ("n=N", "samples to write"),
         ("out=DIR", "the data set folder"),
         ("synthesizer=NAME", "how images are made: deepinversion, adi, dafl, dfad, zskt, dfq, fast, noise"),
         ("class_counts=balanced", "balanced | as_drawn | {class: count, ...}"),
         ("format=shards", "shards | imagefolder | both"),
         ("from_run=RUN_DIR", "start from a distill run's trained generator and student, with its settings"),
         ("device=auto", "auto | cpu | cuda | cuda:N")),
        ("teacher.checkpoint=outputs/teacher/teacher.pt n=2000 out=outputs/synthetic/shapes",
         "experiment=cifar10_resnet34_resnet18_dfq teacher.checkpoint=T.pt from_run=RUN_DIR draw=sample n=50000 "
         "out=outputs/synthetic/cifar10"),
    ),
    "audit": CommandHelp(
        "check a synthetic data set for leaked training images.\n"
        "Finds the nearest real training image of every synthetic image, in pixels and in the teacher's features,\n"
        "against how close held-out real images come; writes audit.json, closest_pairs.png and distances.png\n"
        "to the run folder.",
        (("synthetic=DIR", "the data set folder written by datafree synthesize"),
         ("data=NAME", "the real data: data.train is searched, data.test is the held-out baseline"),
         ("teacher.checkpoint=PATH", "the feature space (default: the teacher the set's manifest names)"),
         ("features=BOOL", "false: pixels only, no teacher"),
         ("baseline_quantile=Q", "the thresholds: this quantile of the held-out images' distances"),
         *RUN_KEYS),
        ("synthetic=outputs/synthetic/shapes",
         "synthetic=outputs/synthetic/cifar10 data=cifar10_jpeg teacher.checkpoint=T.pt"),
    ),
    "deploy": CommandHelp(
        "write the student as deployable files, each checked against PyTorch; int8=true adds data-free int8.\n"
        "Writes student.onnx, student.ts, student.pt2 (they take [0, 1] pixels, any batch size) and deploy.json to\n"
        "the run folder; a file whose logits differ from the PyTorch student's beyond the tolerance is not written.",
        (("run=RUN_DIR", "a distill run's folder: its student, replay pool, synthesizer and data"),
         ("checkpoint=PATH", "or a student.pt (a datafree checkpoint)"),
         ("formats=[onnx,torchscript,export]", "the files to write"),
         ("int8=BOOL", "also student.int8.onnx: onnxruntime static int8 calibrated on synthetic images only"),
         ("synthetic=DIR", "a synthetic data set (datafree synthesize) to check and calibrate on"),
         ("data=NAME", "real test images for the checks and int8's accuracy (default: the run's data)"),
         ("max_logit_diff=X", "the tolerance of a float file (min_agreement=F: of its top-1 agreement)"),
         *RUN_KEYS),
        ("run=outputs/distill/RUN int8=true",
         "checkpoint=student.pt synthetic=outputs/synthetic/shapes data=shapes formats=[onnx] int8=true"),
    ),
    "report": CommandHelp(
        "compare the teacher and its students side by side: size, speed, accuracy, calibration, robustness.\n"
        "Parameters, MACs, file size, CPU latency at batch 1, GPU throughput, peak memory, test accuracy,\n"
        "agreement, ECE, per-class accuracy, corruptions and feature similarity; writes report.json, report.md\n"
        "and pictures to the run folder. Without test images it reports what needs no labels and says what it skipped.",
        (("run=RUN_DIR", "a distill run's folder: its student, teacher and data"),
         ("checkpoint=PATH", "or a student.pt (then teacher.checkpoint=PATH for the teacher)"),
         ("deployed=DIR", "a deploy folder: its ONNX float and int8 files join the table"),
         ("data=NAME", "the labelled test images (default: the run's data)"),
         ("latency=BOOL", "false: no timing (faster)"),
         *RUN_KEYS),
        ("run=outputs/distill/RUN",
         "run=outputs/distill/RUN deployed=outputs/deploy/RUN data=shapes"),
    ),
    "inspect": CommandHelp(
        "summarise a synthetic data set and verify it.\n"
        "Prints the manifest's summary, checks the sha256 of every file (exit status 1 when some differ, listed)\n"
        "and draws a sample grid per class and the class histogram.",
        (("PATH", "the data set folder (written by datafree synthesize) or its manifest.json"),
         ("--out DIR", "folder for the pictures (default: outputs/inspect/<folder name>)"),
         ("--per-class N", "images per class in the grid (default 8)"),
         ("--no-pictures", "only the summary and the checksums")),
        ("outputs/synthetic/shapes", "outputs/synthetic/shapes --no-pictures"),
        usage="PATH [--out DIR] [--per-class N] [--no-pictures]",
    ),
}


def command_help(command: str) -> str:
    """The help of a recipe command, as ``datafree <command> --help`` prints it."""
    text = HELP[command]
    width = max(len(key) for key, _ in text.keys)
    return "\n".join([
        f"datafree {command}: {text.purpose}",
        "",
        f"usage: datafree {command} {text.usage}",
        "",
        "main keys:" if text.usage.startswith("[key") else "options:",
        *(f"  {key:<{width}}  {what.replace('{command}', command)}" for key, what in text.keys),
        "",
        "examples:",
        *(f"  datafree {command}{' ' + example if example else ''}" for example in text.examples),
        *(["", f"every key and its value: datafree {command} --cfg job   (hydra's own flags: --hydra-help)"]
          if text.usage.startswith("[key") else []),
    ])
