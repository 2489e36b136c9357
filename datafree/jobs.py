"""What each CLI command does, given its composed recipe and its output folder.

Everything that can fail on bad input (names, paths, checkpoints, weights) is
built and checked before the first training step or the first file write.
"""
from __future__ import annotations

from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from datafree.config_checks import check_config
from datafree.data import DeviceBatches, ImageDataset
from datafree.distill.features import KINDS as FEATURE_KINDS, check_layer_names
from datafree.distill.trainer import DistillResult
from datafree.errors import DatafreeError
from datafree.models import create_model
from datafree.synthesizers.noise import NoiseSynthesizer
from datafree.api import make_student
from datafree.teachers import (ClassifierInfo, DataHint, Normalized, Teacher, check_agreement, freeze, save_classifier,
                               teacher_from_config)
from datafree.training import train_classifier
from datafree.utils.device import resolve_device, set_deterministic
from datafree.utils.logging import RunLogger
from datafree.utils.run_state import StateFiles, resume_requested
from datafree.utils.seeding import seed_everything


# -- shared building blocks -------------------------------------------------------------------------
def load_split(data_cfg: DictConfig, split: str) -> ImageDataset | None:
    node = data_cfg.get(split)
    return None if node is None else instantiate(node)


def batches(dataset: ImageDataset, data_cfg: DictConfig, device: torch.device, train: bool, seed: int) -> DeviceBatches:
    return DeviceBatches(
        dataset,
        batch_size=int(data_cfg.batch_size if train else data_cfg.eval_batch_size),
        device=device,
        shuffle=train,
        augment=train,
        drop_last=train,
        crop_padding=int(data_cfg.get("crop_padding", 4)),
        seed=seed,
        channels_last=device.type == "cuda",
    )


def check_classes(dataset: ImageDataset, num_classes: int, what: str) -> None:
    if dataset.num_classes != num_classes or int(dataset.labels.max()) >= num_classes:
        raise DatafreeError(
            f"the {what} data set has {dataset.num_classes} classes but the recipe says data.num_classes={num_classes}: "
            "set data.num_classes to match the data."
        )


def normalisation(data_cfg: DictConfig, train_set: ImageDataset) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The recipe's mean/std, or the training set's own channel statistics when not given."""
    if data_cfg.get("mean") is not None and data_cfg.get("std") is not None:
        return tuple(data_cfg.mean), tuple(data_cfg.std)
    return train_set.channel_stats()


def check_trainable(cfg: DictConfig) -> None:
    """train-teacher trains zoo models on labelled data; other teacher sources come trained."""
    source = cfg.teacher.get("source") or "datafree"
    if source != "datafree" or not cfg.teacher.get("arch"):
        raise DatafreeError(
            f"train-teacher trains a zoo model (teacher=resnet34, wrn40_2, ...), not a teacher.source={source} teacher, "
            "which is already trained: distil it with 'datafree distill'."
        )
    if cfg.data.get("num_classes") is None or cfg.data.get("train") is None:
        raise DatafreeError("training a teacher needs labelled data: choose a data recipe with data.train (e.g. data=cifar10_jpeg).")


def train_teacher(cfg: DictConfig, out_dir: Path, device: torch.device, logger: RunLogger) -> tuple[Normalized, ClassifierInfo]:
    """Train ``cfg.teacher.arch`` on ``cfg.data`` and write ``teacher.pt``; bad input fails before training.

    The full training state lives next to the logger's output (``state_*.pt``), so a
    resumed run continues the training, or, when it had finished, rebuilds the same teacher.
    """
    check_trainable(cfg)
    num_classes = int(cfg.data.num_classes)
    net = create_model(cfg.teacher.arch, num_classes=num_classes)
    train_set = load_split(cfg.data, "train")
    if train_set is None:
        raise DatafreeError("training a teacher needs data.train: choose a data recipe with a training split.")
    test_set = load_split(cfg.data, "test")
    check_classes(train_set, num_classes, "training")
    if test_set is not None:
        check_classes(test_set, num_classes, "test")
    mean, std = normalisation(cfg.data, train_set)
    model = Normalized(net, mean, std).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    train = cfg.teacher.train
    result = train_classifier(
        model,
        batches(train_set, cfg.data, device, train=True, seed=int(cfg.seed)),
        None if test_set is None else batches(test_set, cfg.data, device, train=False, seed=int(cfg.seed)),
        device,
        epochs=int(train.epochs),
        lr=float(train.lr),
        momentum=float(train.momentum),
        weight_decay=float(train.weight_decay),
        label_smoothing=float(train.label_smoothing),
        schedule=str(train.schedule),
        warmup=float(train.warmup),
        amp=bool(cfg.amp),
        time_budget_s=train.get("time_budget_s"),
        logger=logger,
        progress=bool(cfg.progress),
        state=run_state(cfg, logger.out_dir, logger.enabled),
        checkpoint_every=int(train.get("checkpoint_every", 1000)),
        max_nonfinite=int(train.get("max_nonfinite", 20)),
    )
    info = ClassifierInfo(
        arch=str(cfg.teacher.arch),
        num_classes=num_classes,
        input_size=(train_set.channels, train_set.image_size, train_set.image_size),
        mean=mean,
        std=std,
        classes=list(train_set.classes),
        test_accuracy=None if test_set is None else result["test_accuracy"],
        extra={"train_wall_time_s": round(result["wall_time_s"], 2), "epochs": result["epochs"]},
    )
    path = save_classifier(out_dir / "teacher.pt", model, info)
    logger.info(f"teacher written to {path}")
    return freeze(model), info


# -- commands ------------------------------------------------------------------------------------
def run_state(cfg: DictConfig, directory: Path, enabled: bool) -> StateFiles:
    """The full-state files of one loop of this run; ``cfg.resume`` was checked by :func:`prepare`."""
    return StateFiles(directory, config=OmegaConf.to_container(cfg, resolve=True), resume=bool(cfg.get("resume")),
                      enabled=enabled)


def prepare(cfg: DictConfig, out_dir: Path) -> torch.device:
    """Every check that needs no work: recipe types and sizes, resume, device; then seeds."""
    check_config(cfg)
    resume_requested(cfg.get("resume"), out_dir)
    device = resolve_device(cfg.device)
    set_deterministic(bool(cfg.get("deterministic", False)))
    seed_everything(int(cfg.seed))
    return device


def train_teacher_job(cfg: DictConfig, out_dir: Path) -> dict:
    check_trainable(cfg)  # before the generic checks: a module teacher's unset keys are not the point here
    device = prepare(cfg, out_dir)
    with RunLogger(out_dir) as logger:
        _, info = train_teacher(cfg, out_dir, device, logger)
    wall = info.extra["train_wall_time_s"]
    print(f"teacher {info.arch}: test accuracy {_pct(info.test_accuracy)} after {info.extra['epochs']} epochs "
          f"({wall:.0f}s on {_device_name(device)})")
    print(f"checkpoint: {out_dir / 'teacher.pt'}")
    return {"test_accuracy": info.test_accuracy, "wall_time_s": wall, "checkpoint": str(out_dir / "teacher.pt")}


def data_hint(data_cfg: DictConfig, test_set: ImageDataset | None) -> DataHint:
    """What the run's data says about the teacher's input, for the values the teacher leaves open."""
    if test_set is None:
        return DataHint(num_classes=data_cfg.get("num_classes"))
    _, channels, height, width = test_set.images.shape
    return DataHint(channels=channels, height=height, width=width, num_classes=test_set.num_classes)


def will_train_teacher(cfg: DictConfig) -> bool:
    node = cfg.teacher
    return (node.get("source") or "datafree") == "datafree" and not node.get("checkpoint") and bool(node.get("train_if_missing"))


def obtain_teacher(cfg: DictConfig, out_dir: Path, device: torch.device, hint: DataHint, logger: RunLogger) -> Teacher:
    """The recipe's teacher, from any source; a zoo teacher is trained first when asked to and none is given."""
    node = cfg.teacher
    if will_train_teacher(cfg):
        if cfg.data.get("num_classes") is None:
            raise DatafreeError("no teacher.checkpoint, and no labelled data to train a teacher on (data.train): "
                                "set teacher.checkpoint=PATH, or choose a data recipe with a training split.")
        logger.info("no teacher checkpoint given: training one first (teacher.train_if_missing=true)")
        model, info = train_teacher(cfg, out_dir, device, RunLogger(out_dir / "teacher"))
        return Teacher(model, info)
    return teacher_from_config(node, device, hint)


def distill_job(cfg: DictConfig, out_dir: Path) -> dict:
    device = prepare(cfg, out_dir)

    # Everything that can be wrong with the recipe is checked here, before any work.
    data_classes = cfg.data.get("num_classes")
    student_node = cfg.student
    # A bad name (model or layer) or class count fails before a teacher is trained.
    student_classes = student_node.get("num_classes")
    if student_classes is not None and data_classes is not None and int(student_classes) != int(data_classes):
        raise DatafreeError(f"student.num_classes={student_classes} but the data has {data_classes} classes "
                            f"(data.num_classes): set student.num_classes={data_classes}, or null to follow the teacher.")
    features = {kind: cfg.trainer.get(kind) for kind in FEATURE_KINDS}
    check_layer_names(create_model(student_node.arch, num_classes=int(data_classes or 10)), "student", **features)
    if will_train_teacher(cfg):
        with torch.random.fork_rng(devices=[]):  # the check must not move the seed the teacher is trained from
            check_layer_names(create_model(cfg.teacher.arch, num_classes=int(data_classes or 10)), "teacher", **features)
    synthesizer = instantiate(cfg.synthesizer)
    make_distiller = instantiate(cfg.trainer)
    test_set = load_split(cfg.data, "test")
    if test_set is not None and data_classes is not None:
        check_classes(test_set, int(data_classes), "test")
    logger = RunLogger(out_dir)
    teacher = obtain_teacher(cfg, out_dir, device, data_hint(cfg.data, test_set), logger)
    info = teacher.info
    for note in teacher.notes:
        logger.info(f"teacher: {note}")
    check_agreement(info.num_classes, info.input_size, data_classes=None if data_classes is None else int(data_classes),
                    data_size=None if test_set is None else tuple(test_set.images.shape[1:]),
                    student_classes=student_node.get("num_classes"))
    make_student(student_node.arch, info, device)  # runs on the teacher's input, gives its classes
    num_classes = info.num_classes
    test_batches = None if test_set is None else batches(test_set, cfg.data, device, train=False, seed=int(cfg.seed))

    def run(synth, run_dir: Path, run_logger: RunLogger, **overrides) -> DistillResult:
        seed_everything(int(cfg.seed))  # the same student initialisation for every run of this job
        student, student_info = make_student(student_node.arch, info, device)
        if device.type == "cuda":
            student = student.to(memory_format=torch.channels_last)
        distiller = make_distiller(
            teacher=teacher.model, student=student, synthesizer=synth, device=device, num_classes=num_classes,
            input_size=info.input_size, amp=bool(cfg.amp), test_batches=test_batches, logger=run_logger,
            student_info=student_info, progress=bool(cfg.progress), state=run_state(cfg, run_dir, run_logger.enabled),
            **overrides,
        )
        return distiller.fit()

    with logger:
        result = run(synthesizer, out_dir, logger, checkpoint_path=out_dir / "student.pt", grid_path=out_dir / "samples.png")
    summary = {"teacher_accuracy": info.test_accuracy, "student_accuracy": result.student_accuracy,
               "agreement": result.agreement, "images": result.images_synthesized,
               "wall_time_s": round(result.wall_time_s, 1), "checkpoint": str(out_dir / "student.pt"),
               "samples": str(out_dir / "samples.png")}
    teacher_acc = result.teacher_accuracy if result.teacher_accuracy is not None else info.test_accuracy
    print(f"teacher {info.arch}: test accuracy {_pct(teacher_acc)}")
    print(f"student {cfg.student.arch}: test accuracy {_pct(result.student_accuracy)} "
          f"(agreement with teacher {_pct(result.agreement)}) after {result.images_synthesized} synthetic images, "
          f"{result.wall_time_s:.0f}s on {_device_name(device)}, stopped by {result.stopped_by}")
    if cfg.get("noise_baseline"):
        # Same student, same number of rounds and steps, but inputs of pure noise.
        noise = NoiseSynthesizer(batch_size=getattr(synthesizer, "batch_size", 256))
        with RunLogger(out_dir / "noise_baseline") as noise_logger:
            baseline = run(noise, out_dir / "noise_baseline", noise_logger, rounds=max(1, result.rounds), time_budget_s=None)
        summary["noise_baseline_accuracy"] = baseline.student_accuracy
        print(f"baseline: the same student distilled on {baseline.images_synthesized} random-noise images: "
              f"test accuracy {_pct(baseline.student_accuracy)}")
    if test_set is not None:
        print(f"chance: {_pct(1 / num_classes)}")
    print(f"student checkpoint: {summary['checkpoint']}")
    print(f"synthetic sample grid: {summary['samples']}")
    return summary


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
