"""What each CLI command does, given its composed recipe and its output folder.

Everything that can fail on bad input (names, paths, checkpoints, weights) is
built and checked before the first training step or the first file write.

Under torchrun every rank runs the same job (see :mod:`datafree.utils.dist`): each its own
random draws and state files, rank 0 alone the logs, checkpoints and data set files.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from datafree.config_checks import check_config
from datafree.data import DeviceBatches, ImageDataset
from datafree.distill.features import KINDS as FEATURE_KINDS, check_layer_names
from datafree.distill.objectives import Objectives
from datafree.distill.settings import Terms
from datafree.distill.trainer import DistillResult
from datafree.errors import DatafreeError
from datafree.models import MODELS, create_model
from datafree.recipe_nodes import instantiate_node
from datafree.synthesizers.noise import NoiseSynthesizer
from datafree.api import make_student
from datafree.teachers import (ClassifierInfo, DataHint, Normalized, Teacher, check_agreement, freeze, save_classifier,
                               teacher_from_config)
from datafree.training import train_classifier
from datafree.utils import dist
from datafree.utils.device import resolve_device, set_deterministic
from datafree.utils.logging import RunLogger
from datafree.utils.run_state import StateFiles, resume_requested
from datafree.utils.seeding import seed_everything


# -- shared building blocks -------------------------------------------------------------------------
def load_split(data_cfg: DictConfig, split: str) -> ImageDataset | None:
    node = data_cfg.get(split)
    return None if node is None else instantiate_node(node, f"data.{split}")


def batches(dataset: ImageDataset, data_cfg: DictConfig, device: torch.device, train: bool, seed: int) -> DeviceBatches:
    """This rank's batches: training ones are its share of each global batch, evaluation ones its share of the set."""
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
        shard=(dist.rank(), dist.world_size()),
    )


def check_classes(dataset: ImageDataset, num_classes: int, what: str) -> None:
    if dataset.num_classes != num_classes or int(dataset.labels.max()) >= num_classes:
        raise DatafreeError(
            f"the {what} data set has {dataset.num_classes} classes but the recipe says data.num_classes={num_classes}: "
            "set data.num_classes to match the data."
        )


def normalisation(data_cfg: DictConfig, train_set: ImageDataset) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The recipe's mean/std (one value per channel), or the training set's own channel statistics when not given."""
    if data_cfg.get("mean") is not None and data_cfg.get("std") is not None:
        mean, std = tuple(data_cfg.mean), tuple(data_cfg.std)
        if len(mean) != train_set.channels or len(std) != train_set.channels:
            raise DatafreeError(
                f"data.mean / data.std have {len(mean)} / {len(std)} value(s) but the training images have "
                f"{train_set.channels} channel(s): give one value per channel, or set both to null to compute them "
                "from the training images."
            )
        return mean, std
    mean, std = train_set.channel_stats()
    # A constant channel (an opaque alpha, say) has std 0: leave it unscaled rather than divide by zero.
    return mean, tuple(v if v > 1e-3 else 1.0 for v in std)


def same_channels(dataset: ImageDataset | None, channels: int, data_cfg: DictConfig, what: str,
                  logger: RunLogger) -> ImageDataset | None:
    """``dataset`` with ``channels`` channels: converted when data.channels leaves the count open (null)."""
    if dataset is None or dataset.channels == channels:
        return dataset
    if data_cfg.get("channels") is not None:
        raise DatafreeError(f"data.channels={data_cfg.channels} but {what} takes {channels}-channel images: set "
                            f"data.channels={channels} (or null to follow {what}).")
    logger.info(f"data: the test images have {dataset.channels} channel(s) and {what} takes {channels}: converted "
                "(data.channels chooses)")
    return dataset.with_channels(channels)


def check_trainable(cfg: DictConfig) -> None:
    """train-teacher trains zoo models on labelled data; other teacher sources come trained."""
    source = cfg.teacher.get("source") or "datafree"
    if source != "datafree" or not cfg.teacher.get("arch"):
        raise DatafreeError(
            f"train-teacher trains a zoo model (teacher=resnet34, wrn40_2, ...), not a teacher.source={source} teacher, "
            "which is already trained: distil it with 'datafree distill'."
        )
    if cfg.data.get("num_classes") is None or cfg.data.get("train") is None:
        raise DatafreeError("training a teacher needs labelled data: choose a data recipe with a training split "
                            "(e.g. data=cifar10, data=imagefolder).")


def train_teacher(cfg: DictConfig, out_dir: Path, device: torch.device, logger: RunLogger) -> tuple[Normalized, ClassifierInfo]:
    """Train ``cfg.teacher.arch`` on ``cfg.data`` and write ``teacher.pt``; bad input fails before training.

    The full training state lives next to the logger's output (``state_*.pt``), so a
    resumed run continues the training, or, when it had finished, rebuilds the same teacher.
    """
    check_trainable(cfg)
    num_classes = int(cfg.data.num_classes)
    MODELS.get(str(cfg.teacher.arch))  # a bad name fails before the data is read
    train_set = load_split(cfg.data, "train")
    # The teacher takes what its training images are: grey, RGB or RGBA.
    net = create_model(cfg.teacher.arch, num_classes=num_classes, in_channels=train_set.channels)
    test_set = same_channels(load_split(cfg.data, "test"), train_set.channels, cfg.data, "the training data", logger)
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
        state=run_state(cfg, logger.out_dir),
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
    if dist.is_main_process():
        logger.info(f"teacher written to {save_classifier(out_dir / 'teacher.pt', model, info)}")
    return freeze(model), info


# -- commands ------------------------------------------------------------------------------------
def run_state(cfg: DictConfig, directory: Path) -> StateFiles:
    """The full-state files of one loop of this run (this rank's); ``cfg.resume`` was checked by :func:`prepare`."""
    return StateFiles(directory, config=OmegaConf.to_container(cfg, resolve=True), resume=bool(cfg.get("resume")))


# Sizes that global_batch=true gives for all ranks together (each rank takes its share); missing keys are skipped.
GLOBAL_SIZES = ("data.batch_size", "trainer.batch_size", "synthesizer.batch_size", "batch_size")


def per_rank_sizes(cfg: DictConfig) -> list[str]:
    """With ``global_batch=true`` under torchrun: the batch sizes (and the replay pool) divided among the ranks,
    in ``cfg``; returns one note per size changed. The learning rate stays: the global batch did not change."""
    world = dist.world_size()
    if not cfg.get("global_batch") or world == 1:
        return []
    values = {key: OmegaConf.select(cfg, key) for key in (*GLOBAL_SIZES, "trainer.pool_capacity")}
    notes = []
    for key, value in values.items():
        if value is None:
            continue
        if key in GLOBAL_SIZES and value % world:
            raise DatafreeError(f"global_batch=true shares {key}={value} among {world} processes, but {world} does not "
                                f"divide it: give a multiple of {world} (e.g. {key}={value - value % world or world}), or "
                                "global_batch=false (the sizes are then per process).")
        OmegaConf.update(cfg, key, -(-value // world))
        notes.append(f"{key} {value} = {world} x {-(-value // world)}")
    return notes


def prepare(cfg: DictConfig, out_dir: Path) -> torch.device:
    """Every check that needs no work: recipe types and sizes, resume, device; the process group under torchrun;
    then seeds (``seed + rank``)."""
    check_config(cfg)
    resume_requested(cfg.get("resume"), out_dir)
    device = resolve_device(cfg.device)
    dist.init(device, cfg.get("dist_timeout_s", 600))
    notes = per_rank_sizes(cfg)
    if notes:
        print(f"global_batch=true, {dist.world_size()} processes: {'; '.join(notes)} per process")
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
    print(describe_run_folder(out_dir))
    return {"test_accuracy": info.test_accuracy, "wall_time_s": wall, "checkpoint": str(out_dir / "teacher.pt"),
            "run_dir": str(out_dir)}


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


# Keys a student recipe node may hold: its input (channels and size) always follows the teacher.
STUDENT_KEYS = ("arch", "num_classes")


def check_student_node(node: DictConfig) -> None:
    unknown = sorted(set(node.keys()) - set(STUDENT_KEYS))
    if unknown:
        raise DatafreeError(f"unknown key(s) {unknown} in the student recipe: its keys are {list(STUDENT_KEYS)}; the "
                            "student's input channels and size always follow the teacher's.")


def distill_job(cfg: DictConfig, out_dir: Path) -> dict:
    if cfg.data.get("synthetic"):
        return distill_offline_job(cfg, out_dir)
    device = prepare(cfg, out_dir)

    # Everything that can be wrong with the recipe is checked here, before any work.
    data_classes = cfg.data.get("num_classes")
    student_node = cfg.student
    check_student_node(student_node)
    # A bad name (model or layer) or class count fails before a teacher is trained.
    student_classes = student_node.get("num_classes")
    if student_classes is not None and data_classes is not None and int(student_classes) != int(data_classes):
        raise DatafreeError(f"student.num_classes={student_classes} but the data has {data_classes} classes "
                            f"(data.num_classes): set student.num_classes={data_classes}, or null to follow the teacher.")
    features = {kind: cfg.trainer.get(kind) for kind in FEATURE_KINDS}
    # Built on the meta device: the checks draw no random numbers, so that a teacher trained here starts from
    # the seed, as in train-teacher, and is the same teacher.
    with torch.device("meta"):
        check_layer_names(create_model(student_node.arch, num_classes=int(data_classes or 10)), "student", **features)
        if will_train_teacher(cfg):
            check_layer_names(create_model(cfg.teacher.arch, num_classes=int(data_classes or 10)), "teacher", **features)
    synthesizer = instantiate_node(cfg.synthesizer, "synthesizer")
    make_distiller = instantiate_node(cfg.trainer, "trainer")
    test_set = load_split(cfg.data, "test")
    if test_set is not None and data_classes is not None:
        check_classes(test_set, int(data_classes), "test")
    logger = RunLogger(out_dir)
    teacher = obtain_teacher(cfg, out_dir, device, data_hint(cfg.data, test_set), logger)
    info = teacher.info
    for note in teacher.notes:
        logger.info(f"teacher: {note}")
    test_set = same_channels(test_set, info.input_size[0], cfg.data, "the teacher", logger)
    check_agreement(info.num_classes, info.input_size, data_classes=None if data_classes is None else int(data_classes),
                    data_size=None if test_set is None else tuple(test_set.images.shape[1:]),
                    student_classes=student_node.get("num_classes"))
    # What the method needs from the teacher (BatchNorm, hooks) before anything about the student.
    synthesizer.check_teacher(teacher.model)
    make_student(student_node.arch, info, device)  # runs on the teacher's input, gives its classes
    num_classes = info.num_classes
    if device.type == "cuda":
        teacher.model.to(memory_format=torch.channels_last)  # the layout the student and the batches use
    test_batches = None if test_set is None else batches(test_set, cfg.data, device, train=False, seed=int(cfg.seed))

    def run(synth, run_dir: Path, run_logger: RunLogger, **overrides) -> DistillResult:
        seed_everything(int(cfg.seed))  # the same student initialisation for every run of this job
        student, student_info = make_student(student_node.arch, info, device)
        if device.type == "cuda":
            student = student.to(memory_format=torch.channels_last)
        distiller = make_distiller(
            teacher=teacher.model, student=student, synthesizer=synth, device=device, num_classes=num_classes,
            input_size=info.input_size, amp=bool(cfg.amp), test_batches=test_batches, logger=run_logger,
            student_info=student_info, progress=bool(cfg.progress), state=run_state(cfg, run_dir),
            **overrides,
        )
        return distiller.fit()

    with logger:
        result = run(synthesizer, out_dir, logger, checkpoint_path=out_dir / "student.pt", grid_path=out_dir / "samples.png")
    summary = {"teacher_accuracy": info.test_accuracy, "student_accuracy": result.student_accuracy,
               "agreement": result.agreement, "images": result.images_synthesized,
               "wall_time_s": round(result.wall_time_s, 1), "checkpoint": str(out_dir / "student.pt"),
               "samples": str(out_dir / "samples.png"), "run_dir": str(out_dir)}
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
    print(describe_run_folder(out_dir))
    return summary


# What each output of a run is, in the order the summary lists them.
RUN_OUTPUTS = {
    "student.pt": "the distilled student (load it with datafree.load_teacher('datafree', checkpoint=...))",
    "teacher.pt": "the teacher (a datafree checkpoint)",
    "samples.png": "synthetic images, one row per class the teacher gives them",
    "summary.csv": "one row per evaluation",
    "tensorboard": "TensorBoard scalars: tensorboard --logdir {run}",
    "noise_baseline": "the same student distilled on random noise",
    "state_last.pt": "the full state: resume=RUN_DIR continues the run (or runs it longer)",
}


def describe_run_folder(out_dir: Path) -> str:
    """The run folder and what it holds, one line per output that was written."""
    lines = [f"run folder: {out_dir}"]
    for name, what in RUN_OUTPUTS.items():
        if (out_dir / name).exists():
            shown = name + ("/" if (out_dir / name).is_dir() else "")
            lines.append(f"  {shown:<16} {what.format(run=out_dir)}")
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"


def synthesize_job(cfg: DictConfig, out_dir: Path) -> dict:
    """Write ``cfg.n`` synthetic samples to ``cfg.out`` (hydra's run folder keeps only the log)."""
    from datafree.export.synthesize import load_distill_run, synthesize_dataset

    device = prepare(cfg, out_dir)
    node = cfg.teacher
    if (node.get("source") or "datafree") == "datafree" and not node.get("checkpoint"):
        raise DatafreeError("synthesize needs a trained teacher: set teacher.checkpoint=PATH (the teacher.pt of "
                            "'datafree train-teacher' or of a distill run), or choose another source (teacher=module, ...).")
    synthesizer = instantiate_node(cfg.synthesizer, "synthesizer")
    teacher = teacher_from_config(node, device, data_hint(cfg.data, None))
    for note in teacher.notes:
        print(f"teacher: {note}")
    if device.type == "cuda":  # every drawn batch goes through the teacher at least once
        teacher.model.to(memory_format=torch.channels_last)
    student, _ = make_student(cfg.student.arch, teacher.info, device)
    if device.type == "cuda":
        student = student.to(memory_format=torch.channels_last)
    saved = None
    if cfg.get("from_run"):
        file, saved = load_distill_run(cfg.from_run, student, cfg.synthesizer.get("_target_"), cfg.student.get("arch"))
        print(f"synthesizer and student from {file}")
    resolved = OmegaConf.to_container(cfg, resolve=True)
    recipe = {k: v for k, v in resolved.items() if k not in ("data", "trainer", "noise_baseline")}  # unused here
    result = synthesize_dataset(
        teacher, synthesizer, cfg.out, cfg.n, class_counts=cfg.class_counts, classes=resolved.get("classes"),
        student=student, draw=cfg.draw, batch_size=cfg.get("batch_size"), format=cfg.format, shard_size=cfg.shard_size,
        max_draw_factor=float(cfg.max_draw_factor), seed=int(cfg.seed), amp=bool(cfg.amp), progress=bool(cfg.progress),
        recipe=recipe, synthesizer_description=resolved["synthesizer"], synthesizer_state=saved,
    )
    if not result.already_complete:
        counts = ", ".join(str(c) for c in result.class_counts)
        print(f"synthetic data set: {result.count} samples ({counts} per class) in {result.folder}: {result.shards} shard{'s' if result.shards != 1 else ''}, "
              f"{result.bytes / 1e6:.1f} MB; this run wrote {result.samples_this_run} in {result.wall_time_s:.1f}s "
              f"({result.samples_per_s:.1f} samples/s, {result.drawn} images drawn in all) on {_device_name(device)}")
    print(f"manifest: {result.folder / 'manifest.json'}")
    print(f"next: datafree inspect {result.folder}   |   datafree distill data=synthetic data.path={result.folder}")
    return {"count": result.count, "folder": str(result.folder), "bytes": result.bytes, "drawn": result.drawn,
            "wall_time_s": result.wall_time_s, "samples_per_s": result.samples_per_s}


def audit_job(cfg: DictConfig, out_dir: Path) -> dict:
    """Nearest real training image of every synthetic image, against the held-out baseline; writes audit.json."""
    from datafree.export.audit import AuditSettings, check_comparable, check_feature_teacher, run_audit, write_report
    from datafree.export.manifest import teacher_fingerprint
    from datafree.export.reader import SyntheticSet

    dist.require_one_process("datafree audit")
    device = prepare(cfg, out_dir)
    synthetic = SyntheticSet(cfg.synthetic).require("audit it")
    settings = AuditSettings(flips=bool(cfg.flips), features=bool(cfg.features), pixel_threshold=cfg.pixel_threshold,
                             feature_threshold=cfg.feature_threshold, baseline_quantile=float(cfg.baseline_quantile),
                             closest=int(cfg.closest), batch_size=int(cfg.batch_size or 1000), budget_mb=int(cfg.budget_mb),
                             amp=bool(cfg.amp))
    if not 0 <= settings.baseline_quantile <= 1:
        raise DatafreeError(f"baseline_quantile must lie in [0, 1], got {settings.baseline_quantile}: e.g. 0.01.")
    train = load_split(cfg.data, "train")
    if train is None:
        raise DatafreeError("the audit searches the real training set: choose a data recipe with data.train "
                            "(the data the teacher was trained on, e.g. data=cifar10_jpeg).")
    held_out = load_split(cfg.data, "test")
    for real, what in ((train, "training"), (held_out, "held-out")):
        if real is not None:
            check_comparable(synthetic, real, what)  # before the teacher: the cheaper mistake first
    teacher, teacher_entry = None, None
    if settings.features:
        node = cfg.teacher
        if (node.get("source") or "datafree") == "datafree" and not node.get("checkpoint"):
            node = OmegaConf.create((synthetic.manifest.get("recipe") or {}).get("teacher") or {})
            if not node.get("checkpoint") and not node.get("model"):
                raise DatafreeError("the audit's feature space needs the teacher and the data set's manifest names no "
                                    "teacher file: set teacher.checkpoint=PATH, or features=false for pixels only.")
        teacher = teacher_from_config(node, device, data_hint(cfg.data, held_out)).model
        check_feature_teacher(teacher)
        if device.type == "cuda":
            teacher = teacher.to(memory_format=torch.channels_last)
        sha = teacher_fingerprint(teacher)
        teacher_entry = {"sha256": sha, "matches_synthetic_set": sha == synthetic.teacher.get("sha256")}
        if not teacher_entry["matches_synthetic_set"]:
            print("warning: this teacher is not the one that wrote the synthetic set (its sha256 differs): the "
                  "feature space is this teacher's")
    result = run_audit(synthetic, train, held_out, teacher, device, settings, log=print)
    result.report["teacher"] = teacher_entry
    paths = write_report(result, out_dir)
    report = result.report
    print(f"audit of {report['synthetic']['count']} synthetic images against {report['real']['train']} training images"
          f"{'' if held_out is None else f' (baseline: {len(held_out)} held-out images)'}: "
          f"{report['search_time_s']:.1f}s on {_device_name(device)}")
    for space, values in report["distances"].items():
        line = f"  {space:<7} nearest distance: synthetic median {values['synthetic']['q0.5']:.4g}, min {values['synthetic']['q0']:.4g}"
        if "baseline" in values:
            line += f"; held-out real median {values['baseline']['q0.5']:.4g}, min {values['baseline']['q0']:.4g}"
        print(f"{line}; threshold {report['thresholds'][space]['value']:.4g}")
    for space, flagged in report["flagged"].items():
        print(f"flagged near-duplicates ({space}): {flagged['count']} ({100 * flagged['fraction']:.2f}%)"
              + (f", closest first: {[e['index'] for e in flagged['samples'][:10]]}" if flagged["count"] else ""))
    print(f"report: {paths['report']}; pictures: {paths['pairs']}, {paths['distances']}")
    return {"flagged": report["flagged"]["any"]["count"], "report": str(paths["report"]),
            "search_time_s": report["search_time_s"]}


def distill_offline_job(cfg: DictConfig, out_dir: Path) -> dict:
    """``distill data=synthetic``: the student learns from a stored data set's teacher logits; no teacher runs."""
    from datafree.distill.offline import distill_offline
    from datafree.export.audit import check_comparable
    from datafree.export.reader import SyntheticSet
    from datafree.export.stream import SyntheticBatches

    device = prepare(cfg, out_dir)
    trainer = cfg.trainer
    synthetic = SyntheticSet(cfg.data.path).require("distil from it", verify=bool(cfg.data.get("verify", True)))
    channels, height, _ = synthetic.image_shape
    for key, value in (("num_classes", synthetic.num_classes), ("image_size", height)):
        if cfg.data.get(key) is not None and int(cfg.data[key]) != value:
            raise DatafreeError(f"data.{key}={cfg.data[key]} but the synthetic set has {value}: set data.{key}=null.")
    loss = instantiate_node(trainer.loss, "trainer.loss")
    test_set = load_split(cfg.data, "test")
    if test_set is not None:
        check_comparable(synthetic, test_set, "test")
    teacher = synthetic.teacher
    info = ClassifierInfo(arch=str(teacher.get("arch")), num_classes=synthetic.num_classes, input_size=synthetic.image_shape,
                          mean=teacher["mean"], std=teacher["std"], classes=synthetic.classes,
                          test_accuracy=teacher.get("test_accuracy"))
    student, student_info = make_student(cfg.student.arch, info, device)
    if device.type == "cuda":
        student = student.to(memory_format=torch.channels_last)
    if trainer.get("sync_batchnorm"):
        student = dist.sync_batchnorm(student, device, "trainer.sync_batchnorm")
    student_info.extra["synthetic_set"] = str(synthetic.folder)
    # Terms on logits (RKD, the discriminator) work from the stored logits; terms on the teacher's layers are refused.
    objectives = Objectives(None, student, num_classes=synthetic.num_classes, input_size=synthetic.image_shape,
                            device=device, max_nonfinite=int(trainer.max_nonfinite),
                            **{field.name: trainer.get(field.name) for field in dataclasses.fields(Terms)})
    # Each rank streams the set in its own order.
    stream = SyntheticBatches(synthetic, int(trainer.batch_size), device, seed=int(cfg.seed) + dist.rank(),
                              crop_padding=int(cfg.data.crop_padding),
                              device_budget_mb=int(cfg.data.get("device_budget_mb", 2048)),
                              channels_last=device.type == "cuda")
    test_batches = None if test_set is None else batches(test_set, cfg.data, device, train=False, seed=int(cfg.seed))
    steps_per_round = max(1, int(trainer.student_steps))
    with RunLogger(out_dir) as logger:
        result = distill_offline(
            student, stream, loss, device=device, steps=int(trainer.rounds) * steps_per_round, lr=float(trainer.lr),
            optimizer=str(trainer.optimizer), momentum=float(trainer.momentum), weight_decay=float(trainer.weight_decay),
            clip_grad_norm=trainer.get("clip_grad_norm"),
            eval_every=int(trainer.eval_every) * steps_per_round, log_every=int(trainer.log_every),
            time_budget_s=trainer.get("time_budget_s"), checkpoint_every=int(trainer.checkpoint_every),
            max_nonfinite=int(trainer.max_nonfinite), amp=bool(cfg.amp), test_batches=test_batches, logger=logger,
            student_info=student_info, checkpoint_path=out_dir / "student.pt",
            state=run_state(cfg, out_dir), progress=bool(cfg.progress), objectives=objectives,
        )
    print(f"student {cfg.student.arch}: test accuracy {_pct(result.student_accuracy)} after {result.steps} steps "
          f"({result.epochs} passes over {len(synthetic)} stored samples), {result.wall_time_s:.0f}s on "
          f"{_device_name(device)}, stopped by {result.stopped_by}; no teacher ran (teacher {teacher.get('arch')}: "
          f"{_pct(teacher.get('test_accuracy'))} when the set was made)")
    if test_set is not None:
        print(f"chance: {_pct(1 / synthetic.num_classes)}")
    print(f"student checkpoint: {out_dir / 'student.pt'}")
    return {"student_accuracy": result.student_accuracy, "steps": result.steps, "wall_time_s": round(result.wall_time_s, 1),
            "checkpoint": str(out_dir / "student.pt")}
