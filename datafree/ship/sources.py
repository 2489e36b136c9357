"""What deploy and report start from: the student (a distill run's folder or a ``student.pt``), the run's teacher,
synthetic images (a stored set, the run's replay pool, or the run's synthesizer drawing on the spot) and real
labelled images when the user has them. Every refusal is one line that names the fix."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import OmegaConf

from datafree.data.dataset import ImageDataset
from datafree.distill.runs import DistillRun, load_distill_run
from datafree.errors import DatafreeError
from datafree.models.sources import build_user_module
from datafree.ops.pixels import quantise
from datafree.recipe_nodes import instantiate_node
from datafree.teachers import ClassifierInfo, Teacher, load_teacher, teacher_from_config
from datafree.utils.run_record import anchored_path, started_in
from datafree.teachers.checkpoint import FORMAT, read_checkpoint
from datafree.utils.run_state import LAST


@dataclass
class Student:
    """A datafree classifier to ship: ``model`` takes [0, 1] pixels (its normalisation inside), on the CPU, frozen."""

    model: torch.nn.Module
    info: ClassifierInfo
    checkpoint: Path
    run_dir: Path | None = None
    run: DistillRun | None = None  # the run's saved state (None when it kept none, or for a bare checkpoint)

    @property
    def run_config(self) -> dict:
        return self.run.config if self.run is not None else {}


def own_class(arch: str) -> bool:
    """Whether a checkpoint's ``arch`` is the user's own class (``pkg.Class``), which datafree cannot rebuild (the
    rule of :func:`datafree.models.sources.network_from_label`)."""
    source, _, name = arch.partition(":")
    return not (name and source in ("torchvision", "timm")) and "." in arch


def read_classifier(path: str | Path, key: str, built_by: dict | None = None) -> tuple[torch.nn.Module, ClassifierInfo]:
    """A datafree checkpoint (a teacher.pt or student.pt) as a frozen CPU model, or one line saying what it is not.
    A network of the user's own class is built by ``built_by`` (the ``_target_`` node of the run's own recipe that
    built it, as ``from_run`` rebuilds a run's teacher), and the weights loaded into it; the file alone cannot."""
    blob = read_checkpoint(path, what=key)  # refuses pickles, TorchScript archives, damaged files with their reasons
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise DatafreeError(f"{key} {str(path)!r} is not a datafree student or teacher (it has no 'format: {FORMAT}' "
                            "entry): give the student.pt of 'datafree distill' or the teacher.pt of 'datafree "
                            "train-teacher'.")
    arch = str(blob.get("arch"))
    if own_class(arch):
        if built_by is not None:  # the student's class: a line that names a key names student.model
            net = build_user_module(built_by, what="student")
            teacher = load_teacher("module", model=net, checkpoint=str(path))
            return teacher.model, dataclasses.replace(teacher.info, arch=arch)
        raise DatafreeError(f"{key} {str(path)!r} holds a {arch} network, which only its own class builds: give "
                            "run=RUN_DIR (the distill run's folder, whose recipe says how to build it), or load it with "
                            "datafree.load_teacher('module', model=..., checkpoint=...) and ship it from Python "
                            "(datafree.ship.deploy_student).")
    teacher = load_teacher("datafree", checkpoint=str(path))
    return teacher.model, teacher.info


def own_class_node(config: dict) -> dict | None:
    """The ``_target_`` node a run's recipe built its student of the user's own class from (student=module, or
    student=transformers), or None."""
    node = (config.get("student") or {}) if isinstance(config, dict) else {}
    model = node.get("model") if isinstance(node, dict) and node.get("source") == "module" else None
    return model if isinstance(model, dict) and model.get("_target_") else None


def load_student(run: str | None, checkpoint: str | None) -> Student:
    """The student of ``run`` (a distill run's folder: its ``student.pt`` and saved state) or of ``checkpoint``."""
    if run and checkpoint:
        raise DatafreeError(f"run={run} and checkpoint={checkpoint} both name a student: give one of them.")
    if not run and not checkpoint:
        raise DatafreeError("no student: give run=RUN_DIR (the folder of a distill run) or checkpoint=PATH (a "
                            "student.pt).")
    if checkpoint:
        model, info = read_classifier(checkpoint, "checkpoint")
        return Student(model, info, Path(checkpoint).expanduser())
    folder = Path(run).expanduser()
    if not folder.is_dir():
        raise DatafreeError(f"run={run} is not a folder: point it at the folder of a distill run (it holds student.pt), "
                            "or give checkpoint=PATH for a student file.")
    if not (folder / "student.pt").is_file():
        raise DatafreeError(f"run={run} holds no student.pt: point it at the folder of a distill run that has evaluated "
                            "its student at least once.")
    state = load_distill_run(folder) if (folder / LAST).is_file() else None
    base = started_in(folder)
    if state is not None and base is not None:
        state.config = _anchored(state.config, base)
    model, info = read_classifier(folder / "student.pt", "run", own_class_node(state.config if state else {}))
    return Student(model, info, folder / "student.pt", folder, state)


def _anchored(config, base: Path):
    """The run's recipe with its relative paths (data.root, teacher.checkpoint, ...) read from ``base``, the folder the
    run read them from, where they name something there: deploy and report may run in another folder than the run."""
    if isinstance(config, dict):
        return {key: anchored_path(key, value, base) if not isinstance(value, (dict, list)) else _anchored(value, base)
                for key, value in config.items()}
    if isinstance(config, list):
        return [_anchored(value, base) for value in config]
    return config


def run_teacher(student: Student, device: torch.device) -> Teacher | None:
    """The teacher of the student's run: its teacher.pt (trained in the run), else the teacher its recipe names;
    None for a bare checkpoint, or an offline run (whose teacher never ran)."""
    if student.run_dir is not None and (student.run_dir / "teacher.pt").is_file():
        return load_teacher("datafree", checkpoint=str(student.run_dir / "teacher.pt"), device=device)
    node = student.run_config.get("teacher")
    if not node or student.run_config.get("data", {}).get("synthetic"):
        return None
    try:
        return teacher_from_config(OmegaConf.create(node), device)
    except DatafreeError as error:
        raise DatafreeError(f"the run's teacher cannot be loaded ({error})") from None


def _subset(images: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """``n`` of ``images`` drawn at random (all when there are fewer), in a repeatable order."""
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    return images[order[:n]]


def _stored_set(path: str, info: ClassifierInfo, n: int, seed: int) -> torch.Tensor:
    from datafree.export.reader import SyntheticSet

    stored = SyntheticSet(path).require("check a student on it")
    if tuple(stored.image_shape) != tuple(info.input_size) or stored.num_classes != info.num_classes:
        raise DatafreeError(f"synthetic={path} holds {list(stored.image_shape)} images of {stored.num_classes} classes, "
                            f"the student takes {list(info.input_size)} with {info.num_classes}: give a set made by "
                            "this student's teacher.")
    return _subset(stored.load().images, n, seed)


@torch.no_grad()
def _drawn_on_the_spot(student: Student, n: int, device: torch.device) -> torch.Tensor:
    """``n`` images from the run's synthesizer as it was saved (a generator draws; DeepInversion optimises)."""
    teacher = run_teacher(student, device)
    node = student.run_config.get("synthesizer")
    if teacher is None or not node:
        return torch.empty(0, *student.info.input_size, dtype=torch.uint8)
    synthesizer = instantiate_node(OmegaConf.create(node), "synthesizer")
    model = student.model.to(device)
    synthesizer.bind(teacher.model, model, student.info.num_classes, student.info.input_size, device)
    if student.run.synthesizer_state:
        synthesizer.load_state_dict(student.run.synthesizer_state)
    made, count = [], 0
    while count < n:
        with torch.enable_grad():  # DeepInversion and generators optimise
            images = synthesizer.sample(n - count)
            images = synthesizer.synthesize().images if images is None else images
        made.append(quantise(images[: n - count]).cpu())
        count += len(made[-1])
    student.model.cpu()
    return torch.cat(made)


def synthetic_images(student: Student, n: int, synthetic: str | None, device: torch.device,
                     seed: int = 0) -> tuple[torch.Tensor, str]:
    """(up to ``n`` uint8 synthetic images, where they came from); none (an empty tensor) when the student has no
    run and no stored set is given. A stored set comes first, then the run's replay pool, then its synthesizer."""
    if synthetic:
        return _stored_set(synthetic, student.info, n, seed), f"the stored set {synthetic}"
    if student.run is None:
        return torch.empty(0, *student.info.input_size, dtype=torch.uint8), "none"
    stored = (student.run_config.get("data") or {}).get("path") if (student.run_config.get("data") or {}).get("synthetic") else None
    if stored and Path(stored).is_dir():  # an offline run: the set it learned from
        return _stored_set(stored, student.info, n, seed), f"the run's stored set {stored}"
    pool = student.run.pool_images
    images = _subset(pool, n, seed) if pool is not None and len(pool) else torch.empty(0, *student.info.input_size,
                                                                                        dtype=torch.uint8)
    where = [f"{len(images)} from the run's replay pool"] if len(images) else []
    if len(images) < n:
        drawn = _drawn_on_the_spot(student, n - len(images), device)
        if len(drawn):
            where.append(f"{len(drawn)} drawn now by the run's synthesizer")
        images = torch.cat([images, drawn])
    return images, ", ".join(where) or "none"


def real_split(data: dict | None, split: str, info: ClassifierInfo, sample: int | None = None,
               seed: int = 0) -> ImageDataset | None:
    """The ``split`` of the recipe's data node (``data=...``), else of the run's recipe; checked against the student.

    With ``sample``: at most that many of its images, drawn at random in a repeatable order
    (:meth:`~datafree.data.ImageDataset.sample`), for measurements that take the first N images (``eval_images``,
    ``corruption_images``, ...): a prefix of the stored order would measure a few classes only."""
    if not data or not data.get(split):
        return None
    node = dict(data[split])
    if node.get("image_size") == "auto":  # data.image_size=auto: the student's (the teacher's) input size; a
        _, height, width = info.input_size  # non-square one: the images' own size, which must be it
        node["image_size"] = int(height) if height == width else None
    dataset = instantiate_node(OmegaConf.create(node), f"data.{split}")
    known = list(info.classes) if len(info.classes) == info.num_classes else []
    if known and dataset.classes != known and set(dataset.classes) <= set(known):  # a split without some classes:
        dataset = dataset.relabelled(known)  # labelled by name (by position, the labels after the gap would be wrong)
    unknown = [c for c in dataset.classes if known and c not in known]
    if unknown and dataset.num_classes != info.num_classes:  # refused below too: this names the folders to look at
        raise DatafreeError(f"data.{split}'s class folders {', '.join(unknown[:5])} are not among the student's classes "
                            f"({', '.join(known[:8])}{', ...' if len(known) > 8 else ''}): name each folder after one of "
                            "them, or choose the data the teacher was made for (data=...).")
    if tuple(dataset.images.shape[1:]) != tuple(info.input_size) or dataset.num_classes != info.num_classes:
        raise DatafreeError(f"data.{split} holds {list(dataset.images.shape[1:])} images of {dataset.num_classes} "
                            f"classes, the student takes {list(info.input_size)} with {info.num_classes}: choose the "
                            "data the teacher was made for (data=..., data.image_size=...).")
    return dataset if sample is None else dataset.sample(sample, seed)


def data_node(recipe_data, student: Student) -> tuple[dict | None, str]:
    """(the data node to read real images from, where it came from): the recipe's when it names one, else the run's."""
    if recipe_data is not None:
        node = OmegaConf.to_container(recipe_data, resolve=True) if OmegaConf.is_config(recipe_data) else recipe_data
        return node, "the recipe's data"
    node = student.run_config.get("data")
    return (node, "the run's data") if node else (None, "none")


def recipe_settings(cls, values: dict):
    """A settings dataclass (:class:`~datafree.ship.deploy.DeploySettings`,
    :class:`~datafree.ship.report.ReportSettings`) from a recipe's keys: those it names; the rest of the recipe is
    not its business, and a key the recipe lacks keeps its default."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in names})
