"""What each CLI command does, given its composed recipe and its output folder.

Everything that can fail on bad input (names, paths, checkpoints, weights) is
built and checked before the first training step or the first file write.

Under torchrun every rank runs the same job (see :mod:`datafree.utils.dist`): each its own
random draws and state files, rank 0 alone the logs, checkpoints and data set files.
"""
from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from datafree.api import checked_student
from datafree.config_checks import check_config
from datafree.data import DeviceBatches, ImageDataset, class_names, count_classes
from datafree.data.loader import crop_for
from datafree.distill.features import KINDS as FEATURE_KINDS, check_layer_names
from datafree.distill.preflight import check_host_memory
from datafree.distill.trainer import DistillResult
from datafree.errors import DatafreeError, ImageSizesDiffer
from datafree.evaluate import answers_one_class
from datafree.models import create_model
from datafree.models.bn_momentum import lags, set_bn_momentum
from datafree.models.sources import build_network, label_source, on_meta_device, takes_image_size
from datafree.recipe_nodes import instantiate_node
from datafree.synthesizers.noise import NoiseSynthesizer
from datafree.teachers import (ClassifierInfo, DataHint, Normalized, Teacher, check_agreement, freeze, save_classifier,
                               teacher_from_config)
from datafree.teachers.checkpoint import FORMAT, read_checkpoint, saved_label
from datafree.teachers.checks import check_training_output, read_logits_field
from datafree.teachers.loader import source_of, zoo_checkpoint_missing
from datafree.teachers.state_dicts import extract_state_dict, load_start_weights, mismatch_fix, only_its_class
from datafree.teachers.weights_fit import fit_change, saved_network
from datafree.teachers.students import start_weights, student_label, student_spec
from datafree.training import train_classifier
from datafree.utils import dist
from datafree.utils.device import (cpu_threads, depthwise_with_batchnorm, memory_amount, network_layout, resolve_device,
                                   set_deterministic)
from datafree.utils.logging import RunLogger, log
from datafree.utils.run_state import StateFiles, resume_requested
from datafree.utils.seeding import seed_everything


# -- shared building blocks -------------------------------------------------------------------------
def load_split(data_cfg: DictConfig, split: str) -> ImageDataset | None:
    node = data_cfg.get(split)
    return None if node is None else instantiate_node(node, f"data.{split}")


# data.image_size=auto (the real-data recipes' default): a run that has a teacher reads its images at the teacher's
# input size (distill; audit: the synthetic set's), a run that trains one at the images' own size (train-teacher),
# so a 64-px teacher is not evaluated on 32-px images, nor 224-px photos trained on at 32 px, by a default.
AUTO = "auto"


def image_size_is_auto(data_cfg: DictConfig) -> bool:
    return data_cfg.get("image_size") == AUTO


def set_image_size(data_cfg: DictConfig, size: int | None) -> None:
    """Put a size in place of data.image_size=auto; the splits' image_size follows it (${data.image_size})."""
    data_cfg.image_size = size


def declared_input_size(teacher_node: DictConfig) -> list[int] | None:
    """The teacher's input size where the recipe or its datafree checkpoint states it, read without loading the
    weights (a memory map of the file); None where only the teacher's network or the data can say."""
    if teacher_node.get("input_size"):
        return list(teacher_node.input_size)
    path = teacher_node.get("checkpoint")
    if not path or not Path(path).is_file():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - not a plain checkpoint (TorchScript, an old format): the loader says what it is
        return None
    return list(blob["input_size"]) if isinstance(blob, dict) and blob.get("format") == FORMAT else None


def read_test_split_before_teacher(data_cfg: DictConfig, teacher_node: DictConfig,
                                   logger: RunLogger) -> ImageDataset | None:
    """data.image_size=auto, before the teacher is loaded: the test split at the size the teacher declares (read
    once), else at its images' own size (the teacher may take its size from them), or None when those differ (it is
    read at the teacher's size once the teacher is loaded)."""
    declared = declared_input_size(teacher_node)
    if declared and declared[1] == declared[2]:
        set_image_size(data_cfg, int(declared[1]))
        if data_cfg.get("test") is not None:
            logger.info(f"data: the test images are read at the teacher's input size, {declared[1]}x{declared[2]} "
                        "(data.image_size=auto follows the teacher, a number chooses)")
        return load_split(data_cfg, "test")
    set_image_size(data_cfg, None)
    try:
        return load_split(data_cfg, "test")
    except ImageSizesDiffer:
        return None


def read_test_split_at_teacher_size(data_cfg: DictConfig, test_set: ImageDataset | None, input_size, logger: RunLogger):
    """data.image_size=auto: the test split at the teacher's input size (read again from its files when its own
    size differs: a resize of the first read would lose what larger images hold)."""
    _, height, width = input_size
    if data_cfg.get("test") is None or height != width:  # a non-square teacher: check_agreement says what to set
        return test_set
    set_image_size(data_cfg, int(height))
    if test_set is not None and test_set.height_width == (height, width):
        return test_set
    own = "they differ in size" if test_set is None else f"their own size is {'x'.join(map(str, test_set.height_width))}"
    logger.info(f"data: the test images are read at the teacher's input size, {height}x{height} ({own}; "
                "data.image_size=auto follows the teacher, a number chooses)")
    return load_split(data_cfg, "test")


def note_cpu_layout(net: torch.nn.Module, device: torch.device, logger: RunLogger, what: str) -> None:
    """Say so when a network trains channels_last on the CPU because of what it is built of (:func:`network_layout`):
    a run takes another path than an NCHW run would, as any change of rounding makes it. A class that asks for it
    (``channels_last_on_cpu``, as the demo's networks do) chose so itself: nothing to say."""
    if device.type != "cuda" and depthwise_with_batchnorm(net):  # network_layout's rule off a GPU, by structure
        logger.info(f"{what} trains channels_last on the CPU: a network of depthwise convolutions with BatchNorm "
                    "runs its training steps faster so")


def batches(dataset: ImageDataset, data_cfg: DictConfig, device: torch.device, train: bool, seed: int) -> DeviceBatches:
    """This rank's batches: training ones are its share of each global batch, evaluation ones its share of the set."""
    world = dist.world_size()
    if train and len(dataset) < int(data_cfg.batch_size) * world:  # every training batch is full: none would be
        fits = 2 ** max(0, (len(dataset) // world).bit_length() - 1)
        processes = f" on each of {world} processes" if world > 1 else ""
        raise DatafreeError(f"data.batch_size={data_cfg.batch_size}{processes} is more than the {len(dataset)} training "
                            f"images give: set data.batch_size={fits} or lower (every training batch is a full one).")
    return DeviceBatches(
        dataset,
        batch_size=int(data_cfg.batch_size if train else data_cfg.eval_batch_size),
        device=device,
        shuffle=train,
        augment=train,
        drop_last=train,
        crop_padding=int(data_cfg.get("crop_padding", 4)),
        crop=crop_for(str(data_cfg.get("crop", "auto")), min(dataset.height_width)),
        seed=seed,
        channels_last=device.type == "cuda",
        shard=(dist.rank(), dist.world_size()),
    )


def training_class_names(data_cfg: DictConfig) -> list[str] | None:
    """The class folders of the recipe's training split when it is an ImageFolder (from their names alone), which a
    test split of the same folder labels its images by; None for other kinds, or when it cannot be read."""
    node = data_cfg.get("train")
    if node is None or node.get("kind") != "imagefolder":
        return None
    try:
        return class_names("train", node.get("path"), node.get("root"))
    except DatafreeError:  # no training split where the recipe says: the test split stands alone
        return None


def aligned_classes(dataset: ImageDataset | None, reference: list[str] | None, what: str, whose: str,
                    logger: RunLogger, strict: bool = True) -> ImageDataset | None:
    """``dataset`` labelled by its class names' places in ``reference`` (the training folders', the teacher's) when
    they differ from its own: a test split that lacks a class would otherwise give the next class's label to every
    image after it. Names outside ``reference``: one error when ``strict``, else a warning and labels by position."""
    if dataset is None or not reference or list(dataset.classes) == list(reference):
        return dataset
    unknown = [c for c in dataset.classes if c not in reference]
    shown = ", ".join(reference[:8]) + (", ..." if len(reference) > 8 else "")
    if unknown:
        if strict:
            raise DatafreeError(f"the {what} images' class folders {', '.join(unknown[:5])} are not among {whose} "
                                f"({shown}): name each {what} folder after one of them.")
        logger.warning(f"the {what} images' classes ({', '.join(dataset.classes[:8])}) are not {whose} ({shown}): "
                       "their labels are their folders' places in sorted order; check that these match.")
        return dataset
    missing = [c for c in reference if c not in dataset.classes]
    if missing:
        logger.info(f"data: the {what} images hold {len(dataset.classes)} of the {len(reference)} classes of {whose} "
                    f"(none of {', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}): labelled by name")
    return dataset.relabelled(reference)


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


# Where train-teacher builds a network from: the zoo, torchvision, timm or the user's class.
TRAINABLE = ("datafree", "torchvision", "timm", "module")


def check_trainable(cfg: DictConfig) -> None:
    """train-teacher trains a network of any buildable source on labelled data; TorchScript and ensembles come trained."""
    source = source_of(cfg.teacher)
    if source not in TRAINABLE:
        raise DatafreeError(
            f"train-teacher trains a network from the zoo, torchvision, timm or your own class (teacher=resnet34, "
            f"teacher=torchvision teacher.name=resnet50, ...), not a teacher.source={source} teacher, which is already "
            "trained: distil it with 'datafree distill'."
        )
    unset = OmegaConf.is_missing(cfg.data, "num_classes")  # data=imagefolder's ???: check_config names it
    if (cfg.data.get("num_classes") is None and not unset) or cfg.data.get("train") is None:
        raise DatafreeError("training a teacher needs labelled data: choose a data recipe with a training split "
                            "(e.g. data=cifar10, data=imagefolder).")


def teacher_network(cfg: DictConfig, num_classes: int, in_channels: int, image_size: tuple[int, int] | None = None,
                    start=None) -> tuple[torch.nn.Module, str]:
    """(the network train-teacher trains at ``image_size``, its label): from scratch, or from ``teacher.checkpoint``
    (fine-tuning: a classifier for another class count starts fresh, what was adapted is logged). ``start``: what
    teacher.checkpoint holds, where it was read already (:func:`start_checkpoint`)."""
    node = cfg.teacher
    blob = start if start is not None else start_checkpoint(node)
    net, label = build_network(**trained_network(node, blob), num_classes=num_classes, in_channels=in_channels,
                               image_size=image_size, what="teacher")
    if blob is not None:
        where = f"teacher.checkpoint {node.checkpoint!r}"
        state = (blob["state_dict"] if isinstance(blob, dict) and blob.get("format") == FORMAT
                 else extract_state_dict(blob, where, node.get("state_key")))
        fix = lambda: mismatch_fix(blob, "teacher", label, fit_change(  # noqa: E731 - asked only on a mismatch
            label, state, "teacher", "set the teacher to the network the weights were saved from"), RESTART)
        for note in load_start_weights(net, state, where, f"the teacher {label}", fix, other_channels):
            log.info(f"teacher: {note}")
    return net, label


def start_checkpoint(node: DictConfig):
    """What teacher.checkpoint holds, the weights train-teacher starts from (None without one)."""
    return read_checkpoint(node.checkpoint, trust=bool(node.get("trust_checkpoint"))) if node.get("checkpoint") else None


def trained_network(node: DictConfig, start) -> dict:
    """:func:`build_network`'s keys for the network train-teacher trains: the recipe's, or, where it names none
    (teacher=checkpoint: teacher.arch null), those of the network the datafree checkpoint ``start`` names, so that
    a teacher.pt is fine-tuned as what it is."""
    keys = {"source": source_of(node), "arch": node.get("arch"), "name": node.get("name"), "model": node.get("model")}
    if keys["source"] != "datafree" or keys["arch"] or start is None:
        return keys
    label = saved_label(start)
    if label is None:
        where = f"teacher.checkpoint {str(node.checkpoint)!r}"
        raise DatafreeError(
            f"teacher.arch is null, so the network to fine-tune is the one teacher.checkpoint names, and "
            f"{str(node.checkpoint)!r} is not a datafree checkpoint (which names it); "
            + saved_network(extract_state_dict(start, where, node.get("state_key")), "teacher", node.checkpoint,
                            "fine-tune"))
    source, name = label_source(label)
    if source == "module":
        raise only_its_class(label, node.checkpoint, "fine-tune")
    return {"source": source, "arch": name if source == "datafree" else None,
            "name": None if source == "datafree" else name, "model": None}


# The way out of any start weights that do not fit, since a teacher need not start from any.
RESTART = "set teacher.checkpoint=null to train from scratch"


def other_channels(channels: int) -> str:
    """What else lets start weights for ``channels`` channels fit the teacher, whose channels are the training
    images': converting the images to that count, where data.channels can (1, 3 or 4)."""
    convert = f"set data.channels={channels} to train on {channels}-channel images, " if channels in (1, 3, 4) else ""
    return f"{convert}or {RESTART}"


def grey_read_as_colour(train_set: ImageDataset, data_cfg: DictConfig) -> str | None:
    """A note where RGB training images read at data.channels=null are grey (red = green = blue), all or some: grey
    scans saved as RGB, or a grey folder holding a few colour files, make an RGB teacher without a word otherwise."""
    if train_set.channels != 3 or data_cfg.get("channels") is not None:
        return None
    grey = sum(int(((part[:, 0] == part[:, 1]) & (part[:, 1] == part[:, 2])).flatten(1).all(1).sum())
               for part in train_set.images.split(1024))
    if grey == 0:
        return None
    if grey == len(train_set):
        return ("data: every training image is grey (red = green = blue) but stored in colour, so the teacher takes RGB "
                "images: data.channels=1 reads them as grey (1 channel), data.channels=3 keeps RGB")
    return (f"data: {grey} of the {len(train_set)} training images are grey and {len(train_set) - grey} in colour: every "
            "image is read as RGB, so the teacher takes RGB images: data.channels=1 reads them all as grey (1 channel), "
            "data.channels=3 keeps RGB")


def train_teacher(cfg: DictConfig, out_dir: Path, device: torch.device, logger: RunLogger) -> tuple[Normalized, ClassifierInfo]:
    """Train the recipe's teacher on ``cfg.data`` (from ``teacher.checkpoint`` when given) and write ``teacher.pt``;
    bad input fails before training.

    The full training state lives next to the logger's output (``state_*.pt``), so a
    resumed run continues the training, or, when it had finished, rebuilds the same teacher.
    """
    check_trainable(cfg)
    num_classes = int(cfg.data.num_classes)
    if num_classes < 2:  # data.num_classes=auto counted one class folder (a number below 2 is refused by the checks)
        raise DatafreeError("the training images hold one class: a classifier needs two or more, one folder of images "
                            "per class under data.root's train/.")
    start = start_checkpoint(cfg.teacher)
    with torch.random.fork_rng(devices=[]):  # a bad name fails before the data is read, and draws no random number
        on_meta_device(lambda: build_network(**trained_network(cfg.teacher, start), num_classes=num_classes,
                                             what="teacher"))
    if image_size_is_auto(cfg.data):
        set_image_size(cfg.data, None)  # the training images' own size; they must share one, or set data.image_size
    train_set = load_split(cfg.data, "train")
    # The teacher takes what its training images are: grey, RGB or RGBA.
    # Images read at their own size need not be square: the teacher is built, trained and recorded at their height
    # and width (the test images must share them).
    height, width = train_set.height_width
    net, label = teacher_network(cfg, num_classes, train_set.channels, (height, width), start)
    test_set = same_channels(load_split(cfg.data, "test"), train_set.channels, cfg.data, "the training data", logger)
    test_set = aligned_classes(test_set, list(train_set.classes), "test", "the training images", logger)
    check_classes(train_set, num_classes, "training")
    if test_set is not None:
        check_classes(test_set, num_classes, "test")
    if test_set is not None and test_set.height_width != (height, width):
        raise DatafreeError(f"the training images are {height}x{width} but the test images "
                            f"{'x'.join(map(str, test_set.height_width))}: set data.image_size=N to read both at N x N.")
    shade = {1: "grey", 3: "RGB", 4: "RGBA"}.get(train_set.channels, f"{train_set.channels}-channel")
    crop = {"shift": f"a {int(cfg.data.get('crop_padding', 4))}-pixel padded crop",
            "resized": "a random-resized crop"}[crop_for(str(cfg.data.get("crop", "auto")), min(height, width))]
    logger.info(f"data: {len(train_set)} training images, {shade}, {height}x{width}, "
                f"{num_classes} classes{'' if test_set is None else f'; {len(test_set)} test images'}; "
                f"augmentation: {crop} and a flip (data.crop)")
    note = grey_read_as_colour(train_set, cfg.data)
    if note:
        logger.warning(note)
    mean, std = normalisation(cfg.data, train_set)
    model = network_layout(Normalized(net, mean, std).to(device), device)
    note_cpu_layout(model, device, logger, "the teacher")
    size = (train_set.channels, height, width)
    field_note = read_logits_field(model, size, device)
    if field_note:
        logger.info(field_note)
    check_training_output(model, size, device, who="teacher", num_classes=num_classes)  # before any training
    train = cfg.teacher.train
    lr = teacher_lr(train.lr, int(cfg.data.batch_size), logger)
    note = set_bn_momentum(model, train.bn_momentum, who="teacher", key="teacher.train.bn_momentum")
    if note:
        logger.info(note)
    train_batches = batches(train_set, cfg.data, device, train=True, seed=int(cfg.seed))  # a batch the data can fill
    if device.type == "cpu":  # out of memory, the kernel would kill the run without a word
        check_host_memory(None, model, batch_size=int(cfg.data.batch_size), synthesis_batch=0,  # this process's batch
                          synthesis_through_student=False, pool_bytes=0, input_size=size,
                          processes=dist.local_processes(), shared_batches=batch_share(cfg), batch_key="data.batch_size",
                          step="a training step")
    result = train_classifier(
        model,
        train_batches,
        None if test_set is None else batches(test_set, cfg.data, device, train=False, seed=int(cfg.seed)),
        device,
        epochs=int(train.epochs),
        lr=lr,
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
        checkpoint_every=int(train.checkpoint_every),
        max_nonfinite=int(train.max_nonfinite),
        num_classes=num_classes,
    )
    if answers_one_class(result):
        logger.warning(collapsed_teacher(result, list(train_set.classes), model, train, lr))
    info = ClassifierInfo(
        arch=label,
        num_classes=num_classes,
        input_size=size,
        mean=mean,
        std=std,
        classes=list(train_set.classes),
        test_accuracy=None if test_set is None else result["test_accuracy"],
        extra={"train_wall_time_s": round(result["wall_time_s"], 2), "epochs": result["epochs"]},
    )
    if dist.is_main_process():
        logger.info(f"teacher written to {save_classifier(out_dir / 'teacher.pt', model, info)}")
    return freeze(model), info


# teacher.train.lr=auto: the CIFAR recipe's rate for its batch, in proportion to the global batch (the linear rule of
# Goyal et al. 2017). At one fixed rate a small batch took steps too large: a torchvision ResNet-18 trained on a grey
# 3-class folder at batch 64 (docs/benchmarks.md, "train-teacher's learning rate follows the batch").
AUTO_LR, AUTO_LR_BATCH = 0.2, 512


def teacher_lr(setting, batch_size: int, logger: RunLogger) -> float:
    """``teacher.train.lr``: a number as it is; ``auto`` scaled from AUTO_LR at AUTO_LR_BATCH images to this run's
    global batch (``data.batch_size`` per process, as :func:`prepare` left it, times the processes)."""
    if setting != "auto":
        return float(setting)
    batch = batch_size * dist.world_size()
    lr = AUTO_LR * batch / AUTO_LR_BATCH
    logger.info(f"teacher.train.lr=auto: {lr:g} for a global batch of {batch} images ({AUTO_LR:g} per {AUTO_LR_BATCH}, "
                "in proportion; a number chooses)")
    return lr


def collapsed_teacher(result: dict, classes: list[str], model: torch.nn.Module, train: DictConfig, lr: float) -> str:
    """What to say about a trained teacher that gives one class to nearly every test image, and what to change
    (``lr``: the rate it was trained at, ``teacher.train.lr`` resolved)."""
    top = int(result["top_class"])
    name = f"'{classes[top]}' ({top})" if top < len(classes) else str(top)
    said = (f"the trained teacher gives class {name} to {result['top_class_share']:.1%} of the test images (test "
            f"accuracy {result['test_accuracy']:.2%}): a teacher that answers one class has nothing to teach. ")
    if lags(model):
        return said + (f"Its BatchNorm momentum (teacher.train.bn_momentum={train.bn_momentum}) leaves the running "
                       "statistics, which eval mode uses, behind its weights in a short run: set "
                       "teacher.train.bn_momentum=auto.")
    rate = f"{lr:g}{' from auto' if train.lr == 'auto' else ''}"
    return said + (f"Train it longer (teacher.train.epochs, now {train.epochs}, or teacher.train.time_budget_s) or at "
                   f"a lower rate (teacher.train.lr, now {rate}), and check that data.train holds every class.")


# -- commands ------------------------------------------------------------------------------------
def run_state(cfg: DictConfig, directory: Path) -> StateFiles:
    """The full-state files of one loop of this run (this rank's); ``cfg.resume`` was checked by :func:`prepare`."""
    return StateFiles(directory, config=OmegaConf.to_container(cfg, resolve=True), resume=bool(cfg.get("resume")))


# Sizes that global_batch=true gives for all ranks together (each rank takes its share); missing keys are skipped.
GLOBAL_SIZES = ("data.batch_size", "trainer.batch_size", "synthesizer.batch_size", "batch_size")


def batch_share(cfg: DictConfig) -> int:
    """How many processes share each of the recipe's batches: all of them with ``global_batch=true``, else one."""
    return dist.world_size() if cfg.get("global_batch") else 1


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


# experiment=fast's batch sizes on auto: (on a GPU, on the CPU). A GPU's are the fast recipes' own; the CPU's are an
# eighth of them, since at the GPU's one round of a ResNet-18 teacher at 64 px took 213 s on 2 cores, where 32 and 64
# took 26 s and a MobileNetV3-Small reached 0.968 x the teacher in 300 s, three seeds (docs/benchmarks.md, "Grey,
# three classes, 64 px, on the CPU"; benchmarks/grey_shapes_cpu.sh).
AUTO_BATCHES = {"synthesizer.batch_size": (256, 32), "trainer.batch_size": (512, 64)}


def device_batches(cfg: DictConfig, device: torch.device) -> None:
    """The batch sizes left to ``auto`` (:data:`AUTO_BATCHES`), for ``device``, in ``cfg``; the log says each."""
    chosen, other = [], []
    for key, (gpu, cpu) in AUTO_BATCHES.items():
        if OmegaConf.select(cfg, key) != AUTO:
            continue
        size, elsewhere = (cpu, gpu) if device.type == "cpu" else (gpu, cpu)
        OmegaConf.update(cfg, key, size)
        chosen.append(f"{key}=auto: {size}")
        other.append(str(elsewhere))
    if chosen:
        on, off = ("the CPU", "a GPU") if device.type == "cpu" else ("a GPU", "the CPU")
        log.info(f"{', '.join(chosen)} on {on} ({' and '.join(other)} on {off}; a number chooses)")


def count_data_classes(data_cfg: DictConfig) -> None:
    """data.num_classes=auto (data=imagefolder's default): the class folders of the training split, else of the test
    split (a folder of test images alone), counted from their names before any image is read."""
    if data_cfg.get("num_classes") != AUTO:
        return
    refusals = []
    for split in ("train", "test"):
        node = data_cfg.get(split)
        if node is None:
            continue
        if node.get("kind") != "imagefolder":
            raise DatafreeError("data.num_classes=auto counts an ImageFolder's class folders and this data recipe "
                                "reads another kind: set data.num_classes=N.")
        try:
            data_cfg.num_classes = count_classes(split, node.get("path"), node.get("root"))
            return
        except DatafreeError as refusal:
            refusals.append(refusal)
    raise refusals[0] if refusals else DatafreeError("data.num_classes=auto counts an ImageFolder's class folders and "
                                                     "this data recipe names none: set data.num_classes=N.")


def prepare(cfg: DictConfig, out_dir: Path) -> torch.device:
    """Every check that needs no work: recipe types and sizes, resume, device; the process group under torchrun;
    then seeds (``seed + rank``)."""
    check_config(cfg)
    if cfg.get("data") is not None:  # deploy and report read the run's data unless given some
        count_data_classes(cfg.data)
    resume_requested(cfg.get("resume"), out_dir, resumable="resume" in cfg)
    device = resolve_device(cfg.device)
    torch.set_num_threads(cpu_threads(cfg.get("cpu_threads", "auto")))
    dist.init(device, cfg.get("dist_timeout_s", 600))
    device_batches(cfg, device)
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
    return zoo_checkpoint_missing(node) and bool(node.get("train_if_missing"))


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
    """Distil the recipe's student: online from the teacher and a synthesizer, or offline (``data=synthetic``)
    from a stored set's logits. One trainer recipe, one loop (:class:`~datafree.distill.trainer.Distiller`)."""
    device = prepare(cfg, out_dir)
    offline = bool(cfg.data.get("synthetic"))
    student_node = cfg.student
    student_spec(student_node)  # its keys, before any work
    # Everything that can be wrong with the recipe is checked here, before any work: a bad name (model, layer,
    # synthesizer, trainer setting) or class count fails before a teacher is trained.
    if not offline:
        check_student_layers(cfg)
    synthesizer = None if offline else instantiate_node(cfg.synthesizer, "synthesizer")
    make_distiller = instantiate_node(cfg.trainer, "trainer")
    logger = RunLogger(out_dir)
    if offline:
        teacher, info, test_set, source = offline_parts(cfg, device)
    else:
        teacher, info, test_set = online_teacher(cfg, out_dir, device, synthesizer, logger)
        source = synthesizer
    test_batches = None if test_set is None else batches(test_set, cfg.data, device, train=False, seed=int(cfg.seed))

    def run(source, run_dir: Path, run_logger: RunLogger, **overrides) -> tuple[DistillResult, torch.nn.Module]:
        seed_everything(int(cfg.seed))  # the same student initialisation for every run of this job
        student, student_info = checked_student(student_node, info, device)
        student_info.extra.update({"synthetic_set": str(cfg.data.path)} if offline else {})
        student = network_layout(student, device)
        note_cpu_layout(student, device, run_logger, "the student")
        distiller = make_distiller(
            teacher=teacher, student=student, source=source, device=device,
            num_classes=info.num_classes, input_size=info.input_size, amp=bool(cfg.amp), test_batches=test_batches,
            logger=run_logger, student_info=student_info, progress=bool(cfg.progress), state=run_state(cfg, run_dir),
            shared_batches=batch_share(cfg), **overrides,
        )
        return distiller.fit(), student

    with logger:
        result, student = run(source, out_dir, logger, checkpoint_path=out_dir / "student.pt",
                              grid_path=None if offline else out_dir / "samples.png")
    summary = {"teacher_accuracy": info.test_accuracy, "student_accuracy": result.student_accuracy,
               "agreement": result.agreement, "images": result.images_synthesized,
               "steps": result.student_steps, "wall_time_s": round(result.wall_time_s, 1),
               "checkpoint": str(out_dir / "student.pt"), "run_dir": str(out_dir)}
    averaged = ""
    if result.unaveraged_accuracy is not None:  # trainer.ema_decay: the accuracy is the average's
        summary["unaveraged_accuracy"] = result.unaveraged_accuracy
        averaged = f", the average of its weights (the weights themselves {_pct(result.unaveraged_accuracy)})"
    teacher_acc = result.teacher_accuracy if result.teacher_accuracy is not None else info.test_accuracy
    if offline:
        stored, batch = len(source.synthetic), source.student_batch()
        left = "; a pass leaves out what does not fill its last batch, in a new order each pass" if stored % batch else ""
        print(f"student {student_label(student_node)}: test accuracy {_pct(result.student_accuracy)}{averaged} after {result.student_steps} "
              f"steps ({result.epochs} passes over {stored} stored samples, {batch} a step{left}), {result.wall_time_s:.0f}s on "
              f"{_device_name(device, result)}, stopped by {result.stopped_by}; no teacher ran (teacher {info.arch}: "
              f"{_pct(info.test_accuracy)} when the set was made)")
    else:
        summary["samples"] = str(out_dir / "samples.png")
        print(f"teacher {info.arch}: test accuracy {_pct(teacher_acc)}")
        print(f"student {student_label(student_node)}: test accuracy {_pct(result.student_accuracy)}{averaged} "
              f"(agreement with teacher {_pct(result.agreement)}) after {result.images_synthesized} synthetic images, "
              f"{result.wall_time_s:.0f}s on {_device_name(device, result)}, stopped by {result.stopped_by}")
    if cfg.get("noise_baseline") and not offline:
        # Same student, same number of rounds and steps, but inputs of pure noise.
        noise = NoiseSynthesizer(batch_size=getattr(synthesizer, "batch_size", 256))
        with RunLogger(out_dir / "noise_baseline") as noise_logger:
            baseline, _ = run(noise, out_dir / "noise_baseline", noise_logger, rounds=max(1, result.rounds),
                              time_budget_s=None, warn_collapse=False)  # chance is its point
        summary["noise_baseline_accuracy"] = baseline.student_accuracy
        print(f"baseline: the same student distilled on {baseline.images_synthesized} random-noise images: "
              f"test accuracy {_pct(baseline.student_accuracy)}")
    if test_set is not None:
        print(f"chance: {_pct(1 / info.num_classes)}")
    if dist.is_main_process():  # the report's headline for the student the run ends with (datafree report: all of it)
        from datafree.ship.report import headline
        line = headline(student, info.input_size, out_dir / "student.pt", test_set)
        print(f"report: student {line}")
    print(describe_run_folder(out_dir))
    return summary


def check_student_layers(cfg: DictConfig) -> None:
    """The layer-pair terms' layer names, on throwaway zoo networks: before a teacher is trained."""
    data_classes = cfg.data.get("num_classes")
    student_classes = cfg.student.get("num_classes")
    if student_classes is not None and data_classes is not None and int(student_classes) != int(data_classes):
        raise DatafreeError(f"student.num_classes={student_classes} but the data has {data_classes} classes "
                            f"(data.num_classes): set student.num_classes={data_classes}, or null to follow the teacher.")
    features = {kind: cfg.trainer.get(kind) for kind in FEATURE_KINDS}
    # On the meta device: names and shapes without memory, and no random draw, so that a teacher trained next
    # starts from the seed as train-teacher's does.
    classes = int(data_classes or 10)
    spec = student_spec(cfg.student)
    declared = declared_input_size(cfg.teacher)
    size = cfg.data.get("image_size")
    image_size = tuple(declared[1:]) if declared else (int(size), int(size)) if isinstance(size, int) else None
    student, label = on_meta_device(lambda: build_network(spec["source"], arch=spec["arch"], name=spec["name"],
                                                          model=spec["model"], num_classes=classes,
                                                          image_size=image_size))
    check_layer_names(student, "student", **features)
    # The student's checkpoint fits (before a teacher is trained); a network built for one input size is checked
    # once the teacher's is known, if it is not yet (its position embeddings follow the size).
    if image_size is not None or not takes_image_size(spec["source"], str(spec["name"])):
        start_weights(student, label, spec)
    if will_train_teacher(cfg):
        check_layer_names(on_meta_device(lambda: create_model(cfg.teacher.arch, num_classes=classes)), "teacher", **features)


def online_teacher(cfg: DictConfig, out_dir: Path, device: torch.device, synthesizer, logger: RunLogger):
    """(teacher network, its info, the test set in its channels): loaded (or trained) and checked against the data,
    the method and the student."""
    data_classes = cfg.data.get("num_classes")
    follow_teacher = image_size_is_auto(cfg.data)
    test_set = (read_test_split_before_teacher(cfg.data, cfg.teacher, logger) if follow_teacher
                else load_split(cfg.data, "test"))
    training_classes = training_class_names(cfg.data)
    test_set = aligned_classes(test_set, training_classes, "test", "the training images", logger)
    if test_set is not None and data_classes is not None:
        check_classes(test_set, int(data_classes), "test")
    hint = data_hint(cfg.data, test_set)
    if will_train_teacher(cfg):
        check_student_before_training(cfg.student, hint, device)
    teacher = obtain_teacher(cfg, out_dir, device, hint, logger)
    info = teacher.info
    for note in teacher.notes:
        logger.info(f"teacher: {note}")
    if follow_teacher:
        test_set = aligned_classes(read_test_split_at_teacher_size(cfg.data, test_set, info.input_size, logger),
                                   training_classes, "test", "the training images", logger)
        if test_set is not None and data_classes is not None:
            check_classes(test_set, int(data_classes), "test")
    # The teacher's own class names (a datafree checkpoint keeps them): the test labels follow them where they can.
    test_set = aligned_classes(test_set, list(info.classes) if len(info.classes) == info.num_classes else None,
                               "test", "the teacher's classes", logger, strict=False)
    test_set = same_channels(test_set, info.input_size[0], cfg.data, "the teacher", logger)
    check_agreement(info.num_classes, info.input_size, data_classes=None if data_classes is None else int(data_classes),
                    data_size=None if test_set is None else tuple(test_set.images.shape[1:]),
                    student_classes=cfg.student.get("num_classes"))
    # What the method needs from the teacher (BatchNorm, hooks) before anything about the student.
    synthesizer.check_teacher(teacher.model)
    with torch.random.fork_rng(devices=[]):  # a student that cannot serve fails now; the run builds its own
        checked_student(cfg.student, info, device, log_notes=False)
    return network_layout(teacher.model, device), info, test_set


def check_student_before_training(student_node: DictConfig, hint: DataHint, device: torch.device) -> None:
    """The student probed (both modes, class count) against the teacher a run is about to train, whose task the
    data gives: a student that cannot serve fails before the teacher's epochs, not after them."""
    if None in (hint.channels, hint.height, hint.width, hint.num_classes):
        return  # no test split to size the teacher by: the student is checked once the teacher exists
    shape = (hint.channels, hint.height, hint.width)
    # The teacher's normalisation is not known yet; the probe only needs the student to run.
    to_be = ClassifierInfo(arch="the teacher to be trained", num_classes=hint.num_classes, input_size=shape,
                           mean=(0.0,) * hint.channels, std=(1.0,) * hint.channels)
    with torch.random.fork_rng(devices=[]):  # the teacher trained next starts from the seed, as train-teacher's does
        checked_student(student_node, to_be, device, log_notes=False)


def offline_parts(cfg: DictConfig, device: torch.device):
    """(None: no teacher runs, the info of the set's teacher, the test set, the stored set as a batch source)."""
    from datafree.distill.sources import StoredSource
    from datafree.export.audit import check_comparable
    from datafree.export.reader import SyntheticSet

    synthetic = SyntheticSet(cfg.data.path, "data.path").require("distil from it", verify=bool(cfg.data.get("verify", True)))
    _, height, width = synthetic.image_shape
    for key, value, holds in (("num_classes", synthetic.num_classes, f"{synthetic.num_classes} classes"),
                              ("image_size", height if height == width else None, f"images of {height}x{width}")):
        if cfg.data.get(key) is not None and int(cfg.data[key]) != value:
            raise DatafreeError(f"data.{key}={cfg.data[key]} but the synthetic set holds {holds}: set data.{key}=null.")
    test_set = load_split(cfg.data, "test")
    if test_set is not None:
        check_comparable(synthetic, test_set, "test")
    teacher = synthetic.teacher
    info = ClassifierInfo(arch=str(teacher.get("arch")), num_classes=synthetic.num_classes, input_size=synthetic.image_shape,
                          mean=teacher["mean"], std=teacher["std"], classes=synthetic.classes,
                          test_accuracy=teacher.get("test_accuracy"))
    # Each rank streams the set in its own order.
    source = StoredSource(synthetic, crop_padding=int(cfg.data.crop_padding), seed=int(cfg.seed) + dist.rank(),
                          device_budget_mb=int(cfg.data.get("device_budget_mb", 2048)),
                          crop=crop_for(str(cfg.data.get("crop", "auto")), min(height, width)))
    return None, info, test_set, source


# What each output of a run is, in the order the summary lists them.
RUN_OUTPUTS = {
    "student.pt": "the distilled student: datafree deploy run={run} ships it (ONNX, int8, ...)",
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


def _device_name(device: torch.device, result: DistillResult | None = None) -> str:
    """The device, and on a GPU the peak memory the run took so far (what sizing the next run needs): with a
    distillation's ``result``, how much of it the replay pool took and how full it got (it grows as it fills, up to
    trainer.pool_capacity: a longer run takes more)."""
    if device.type != "cuda":
        return "CPU"
    peak = f"peak memory {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB"
    if result is not None and result.pool_bytes:
        peak += (f", {memory_amount(result.pool_bytes)} of it the replay pool, holding {result.pool_filled:,} images "
                 f"of the {result.pool_capacity:,} trainer.pool_capacity lets it grow to")
    return f"{torch.cuda.get_device_name(device)} ({peak})"


def _run_recipe(run_dir: str) -> str:
    """': the settings ...' that built a distill run's teacher, student and synthesizer (hydra's record of its
    command line), or nothing when the run has no such record."""
    from datafree.utils.run_record import RUN_RECIPE_GROUPS, override_key, started_with

    kept = [o for o in started_with(str(run_dir), "distill") if override_key(o).split(".")[0] in RUN_RECIPE_GROUPS]
    return f" (the run was started with {' '.join(kept)})" if kept else " (the same experiment=, teacher=, student= settings)"


def synthesize_job(cfg: DictConfig, out_dir: Path) -> dict:
    """Write ``cfg.n`` synthetic samples to ``cfg.out`` (hydra's run folder keeps only the log)."""
    from datafree.distill.runs import load_distill_run
    from datafree.export.synthesize import synthesize_dataset

    device = prepare(cfg, out_dir)
    node = cfg.teacher
    if zoo_checkpoint_missing(node) and cfg.get("from_run"):
        raise DatafreeError(f"from_run={cfg.from_run} takes the run's trained generator and student, not its recipe: "
                            f"give the run's teacher, student and synthesizer as well{_run_recipe(cfg.from_run)}.")
    if zoo_checkpoint_missing(node):
        raise DatafreeError("synthesize needs a trained teacher: set teacher.checkpoint=PATH (the teacher.pt of "
                            "'datafree train-teacher' or of a distill run), or choose another source (teacher=module, ...).")
    synthesizer = instantiate_node(cfg.synthesizer, "synthesizer")
    teacher = teacher_from_config(node, device, data_hint(cfg.data, None))
    for note in teacher.notes:
        print(f"teacher: {note}")
    network_layout(teacher.model, device)  # every drawn batch goes through the teacher at least once
    student = network_layout(checked_student(cfg.student, teacher.info, device)[0], device)
    saved = None
    if cfg.get("from_run"):
        run = load_distill_run(cfg.from_run)
        run.require(cfg.synthesizer.get("_target_"), student_label(cfg.student))
        run.load_student(student)
        saved = run.synthesizer_state
        print(f"synthesizer and student from {run.file}")
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
    print(f"next: datafree inspect {result.folder}   |   datafree distill data=synthetic data.path={result.folder} "
          "(real test images in data.test give the student's accuracy: recipes/data/synthetic.yaml)")
    return {"count": result.count, "folder": str(result.folder), "bytes": result.bytes, "drawn": result.drawn,
            "wall_time_s": result.wall_time_s, "samples_per_s": result.samples_per_s}


def audit_job(cfg: DictConfig, out_dir: Path) -> dict:
    """Nearest real training image of every synthetic image, against the held-out baseline; writes audit.json."""
    from datafree.export.audit import AuditSettings, check_comparable, check_feature_teacher, run_audit, write_report
    from datafree.export.manifest import teacher_fingerprint
    from datafree.export.reader import SyntheticSet

    dist.require_one_process("datafree audit")
    device = prepare(cfg, out_dir)
    synthetic = SyntheticSet(cfg.synthetic, "synthetic").require("audit it")
    settings = AuditSettings(flips=bool(cfg.flips), features=bool(cfg.features), pixel_threshold=cfg.pixel_threshold,
                             feature_threshold=cfg.feature_threshold, baseline_quantile=float(cfg.baseline_quantile),
                             closest=int(cfg.closest), batch_size=int(cfg.batch_size or 1000), budget_mb=int(cfg.budget_mb),
                             amp=bool(cfg.amp))
    if not 0 <= settings.baseline_quantile <= 1:
        raise DatafreeError(f"baseline_quantile must lie in [0, 1], got {settings.baseline_quantile}: e.g. 0.01.")
    if image_size_is_auto(cfg.data):  # the real images at the synthetic ones' size (not square: their own)
        _, height, width = synthetic.image_shape
        set_image_size(cfg.data, int(height) if height == width else None)
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
        if zoo_checkpoint_missing(node):
            node = OmegaConf.create((synthetic.manifest.get("recipe") or {}).get("teacher") or {})
            if not node.get("checkpoint") and not node.get("model"):
                raise DatafreeError("the audit's feature space needs the teacher and the data set's manifest names no "
                                    "teacher file: set teacher.checkpoint=PATH, or features=false for pixels only.")
        teacher = teacher_from_config(node, device, data_hint(cfg.data, held_out)).model
        check_feature_teacher(teacher)
        teacher = network_layout(teacher, device)
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


def deploy_job(cfg: DictConfig, out_dir: Path) -> dict:
    """The student as checked deployable files (and int8 with ``int8=true``) in the run folder: :mod:`datafree.ship`."""
    from datafree.ship.deploy import DeploySettings, deploy_student
    from datafree.ship.sources import data_node, load_student, real_split, recipe_settings, synthetic_images

    dist.require_one_process("datafree deploy")
    device = prepare(cfg, out_dir)
    values = OmegaConf.to_container(cfg, resolve=True)
    settings = recipe_settings(DeploySettings, {**values, "threads": torch.get_num_threads()})
    student = load_student(cfg.run, cfg.checkpoint)
    data, data_from = data_node(cfg.get("data"), student)
    measured = max(settings.eval_images, settings.check_images)
    real_test, real_train = real_split(data, "test", student.info, sample=measured, seed=int(cfg.seed)), None
    if settings.int8 and settings.compare_real_calibration:  # int8's real calibration draws its own random images
        real_train = real_split(data, "train", student.info)
    wanted = max(settings.check_images, settings.calibration_images if settings.int8 else 0)
    synthetic, where = synthetic_images(student, wanted, cfg.synthetic, device, seed=int(cfg.seed))
    print(f"student {student.info.arch} from {student.checkpoint}; synthetic images: {len(synthetic)} ({where}); "
          f"real images: {'none' if real_test is None else f'{len(real_test)} test'}"
          f"{'' if real_train is None else f', {len(real_train)} training'} ({data_from})")
    manifest = deploy_student(student.model, student.info, out_dir, synthetic=synthetic, real_test=real_test,
                              real_train=real_train, settings=settings,
                              source={"checkpoint": str(student.checkpoint), "synthetic_images": where})
    int8 = manifest["int8"]
    if int8 is not None:
        sizes = int8["bytes"]
        line = f"int8: {sizes['int8_onnx'] / 1e3:.1f} kB (float ONNX {sizes['float_onnx'] / 1e3:.1f} kB)"
        if int8.get("accuracy"):
            acc = int8["accuracy"]
            line += f"; test accuracy {_pct(acc['int8'])} (float {_pct(acc['float'])})"
        if int8.get("calibration_comparison"):
            cmp = int8["calibration_comparison"]
            line += (f"; calibrated on {cmp['images']} real images instead: {_pct(cmp['real_calibrated'])}")
        if int8.get("latency_ms_batch1"):
            ms = {k: v["median_ms"] for k, v in int8["latency_ms_batch1"].items()}
            line += (f"; CPU latency at batch 1: PyTorch {ms['pytorch_float']:.3f} ms, onnxruntime float "
                     f"{ms['onnxruntime_float']:.3f} ms, int8 {ms['onnxruntime_int8']:.3f} ms")
        print(line)
    print(f"deploy folder: {out_dir} ({', '.join(manifest['files'])}, deploy.json)")
    return {"files": list(manifest["files"]), "manifest": str(out_dir / "deploy.json"), "int8": int8}


def report_job(cfg: DictConfig, out_dir: Path) -> dict:
    """The teacher and its students side by side: report.json, report.md and pictures (:mod:`datafree.ship.report`)."""
    from datafree.ship.report import Entry, Images, ReportSettings, build_report, headline_table, write_report
    from datafree.ship.runners import load_runner, torch_runner
    from datafree.ship.sources import (data_node, load_student, real_split, recipe_settings, run_teacher,
                                       synthetic_images)

    dist.require_one_process("datafree report")
    device = prepare(cfg, out_dir)
    threads = torch.get_num_threads()
    student = load_student(cfg.run, cfg.checkpoint)
    info = student.info
    if cfg.teacher.get("checkpoint") or source_of(cfg.teacher) != "datafree":
        teacher = teacher_from_config(cfg.teacher, "cpu", DataHint(num_classes=info.num_classes))
        if (teacher.info.num_classes, tuple(teacher.info.input_size)) != (info.num_classes, tuple(info.input_size)):
            raise DatafreeError(f"the teacher takes {list(teacher.info.input_size)} with {teacher.info.num_classes} "
                                f"classes, the student {list(info.input_size)} with {info.num_classes}: give the "
                                "student's own teacher (teacher.checkpoint=PATH).")
    else:
        teacher = run_teacher(student, torch.device("cpu"))
    data, data_from = data_node(cfg.get("data"), student)
    measured = max(int(cfg.test_images), int(cfg.corruption_images), int(cfg.cka_images))
    test = real_split(data, "test", info, sample=measured, seed=int(cfg.seed))
    images = Images(test)
    if test is None:
        unlabelled, where = synthetic_images(student, int(cfg.cka_images), cfg.synthetic, device, seed=int(cfg.seed))
        images = Images(None, unlabelled if len(unlabelled) else None, where)
    if teacher is None and student.run_config.get("data", {}).get("synthetic"):
        images.skipped.append(f"agreement with the teacher and feature similarity: no teacher: {cfg.run} is an offline "
                              f"run, whose teacher never ran (give teacher.checkpoint=PATH{_set_teacher(student)})")
    entries = []
    if teacher is not None:
        entries.append(Entry("teacher", torch_runner("teacher", teacher.model), teacher.model,
                             _teacher_file(cfg, student), role="teacher"))
    entries.append(Entry("student", torch_runner("student", student.model), student.model, student.checkpoint))
    if cfg.deployed:
        entries += _deployed_entries(Path(cfg.deployed), student, threads, load_runner)
    classes = list(info.classes) or [f"class_{i}" for i in range(info.num_classes)]
    settings = recipe_settings(ReportSettings, {**OmegaConf.to_container(cfg, resolve=True), "threads": threads})
    report = build_report(entries, images, tuple(info.input_size), classes, device, settings)
    report["sources"] = {"student": str(student.checkpoint), "data": data_from, "deployed": cfg.deployed}
    paths = write_report(report, out_dir)
    print("\n".join(headline_table(report["models"])))
    for reason in report["skipped"]:
        print(f"not measured: {reason}")
    print(f"report: {paths['markdown']} ({', '.join(p.name for p in paths.values() if p.suffix == '.png') or 'no pictures'})")
    return {"report": str(paths["report"]), "models": [r["name"] for r in report["models"]]}


def _set_teacher(student) -> str:
    """', the teacher ... made the run's synthetic set', where an offline run's set names its teacher's file."""
    from datafree.export.reader import SyntheticSet

    try:
        recipe_teacher = SyntheticSet(student.run_config["data"]["path"]).manifest["recipe"]["teacher"]
    except Exception:  # noqa: BLE001 - a set moved or removed since: the line names no file
        return ""
    return f": {recipe_teacher['checkpoint']} made its synthetic set" if recipe_teacher.get("checkpoint") else ""


def _teacher_file(cfg: DictConfig, student) -> Path | None:
    if cfg.teacher.get("checkpoint"):
        return Path(cfg.teacher.checkpoint)
    if student.run_dir is not None and (student.run_dir / "teacher.pt").is_file():
        return student.run_dir / "teacher.pt"
    node = student.run_config.get("teacher") or {}
    return Path(node["checkpoint"]) if node.get("checkpoint") else None


def _deployed_entries(folder: Path, student, threads: int, load_runner) -> list:
    """The ONNX files of a deploy folder (float and int8), as report entries run by onnxruntime."""
    import json

    from datafree.ship.deploy import INT8_FILE, MANIFEST
    from datafree.ship.report import Entry

    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise DatafreeError(f"deployed={folder} holds no {MANIFEST}: point it at a folder written by datafree deploy.")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("output", {}).get("shape", [None, None])[1] != student.info.num_classes or \
            manifest.get("input", {}).get("shape", [None])[1:] != list(student.info.input_size):
        raise DatafreeError(f"deployed={folder} holds files for another network ({manifest.get('student', {}).get('arch')}, "
                            f"input {manifest.get('input', {}).get('shape')}): give this student's deploy folder.")
    float_layers = (manifest.get("int8") or {}).get("float_layers") or []
    int8_note = (f"{len(float_layers)} weight layer{'s' * (len(float_layers) != 1)} kept in float by deploy, those "
                 f"int8 hurt most ({', '.join(float_layers)})" if float_layers else None)
    entries = []
    for name, label, note in (("student.onnx", "student ONNX", None), (INT8_FILE, "student int8 ONNX", int8_note)):
        if name in manifest.get("files", {}) and (folder / name).is_file():
            entries.append(Entry(label, load_runner(label, folder / name, "onnxruntime", threads), student.model,
                                 folder / name, note=note))
    if not entries:
        raise DatafreeError(f"deployed={folder} lists no ONNX file: deploy with formats including onnx (and int8=true).")
    return entries
