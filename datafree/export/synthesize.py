"""``datafree synthesize``: draw N samples from a synthesizer, label them with the teacher, write them to disk.

Every drawn image is stored as uint8 pixels and the teacher's logits are computed on
exactly those pixels (not on the float image before rounding), so a student trained
on the stored set sees what the teacher saw. A sample's class is the teacher's label;
the class histogram (balanced by default) is filled in the order samples are drawn,
and synthesizers that aim at classes are steered towards the classes still short.
The folder is written by :class:`~datafree.export.writer.SyntheticWriter`: a killed run
started again continues after its last complete shard, with the same random state.
"""
from __future__ import annotations

import dataclasses
import signal
from pathlib import Path
from typing import Callable

import torch
from omegaconf import OmegaConf
from torch import nn
from tqdm.auto import tqdm

from datafree.distill.preflight import check_host_memory
from datafree.errors import DatafreeError, first_line
from datafree.export.imagefolder import supports_channels
from datafree.export.manifest import teacher_fingerprint
from datafree.export.quota import Quota, class_targets
from datafree.export.samples import Samples
from datafree.ops.pixels import dequantise, quantise
from datafree.export.shards import samples_per_shard
from datafree.export.writer import FORMATS, Start, SyntheticWriter
from datafree.synthesizers.base import Synthesizer
from datafree.teachers import Teacher
from datafree.utils import dist
from datafree.utils.device import autocast
from datafree.utils.run_state import rng_state, set_rng_state
from datafree.utils.seeding import seed_everything
from datafree.utils.dist import ReportedByRankZero
from datafree.utils.logging import RunLogger
from datafree.utils.loop import Loop
from datafree.utils.signals import Interrupted

DRAWS = ("synthesize", "sample")


@dataclasses.dataclass
class SynthesisResult:
    folder: Path
    count: int
    class_counts: list[int]
    shards: int
    bytes: int
    drawn: int
    wall_time_s: float  # this run's
    samples_this_run: int
    already_complete: bool = False

    @property
    def samples_per_s(self) -> float:
        return self.samples_this_run / self.wall_time_s if self.wall_time_s > 0 else 0.0


def class_names(teacher_classes: list[str], num_classes: int, given: list[str] | None = None) -> list[str]:
    """The names a data set's classes get: the ones given, else the teacher's, else class_00, class_01, ..."""
    names = list(given) if given else list(teacher_classes)
    if given and (len(names) != num_classes or len(set(names)) != len(names) or not all(isinstance(c, str) for c in names)):
        raise DatafreeError(f"classes lists {len(names)} names for a teacher with {num_classes} classes: give "
                            f"{num_classes} distinct names, or null to use the teacher's.")
    if len(names) != num_classes:
        width = len(str(num_classes - 1))
        names = [f"class_{k:0{width}d}" for k in range(num_classes)]
    return names


@torch.no_grad()
def label_with_teacher(teacher: nn.Module, images: torch.Tensor, amp: bool) -> Samples:
    """The stored form of ``images`` (uint8) with the teacher's float16 logits on those pixels and its labels (CPU)."""
    pixels = quantise(images)
    with autocast(images.device, amp):
        logits = teacher(dequantise(pixels)).float().half()
    labels = logits.float().argmax(1)
    finite = torch.isfinite(logits).all(1)
    labels = torch.where(finite, labels, -1)  # never kept: a label the quota has no room for
    # Indices are given to the samples that are kept.
    return Samples(pixels, logits, labels, torch.full_like(labels, -1)).to("cpu")


def describe(synthesizer: Synthesizer) -> dict:
    """What the manifest says about a synthesizer built in Python: its class and its plain settings."""
    settings = {k: v for k, v in vars(synthesizer).items()
                if not k.startswith("_") and isinstance(v, (bool, int, float, str)) and k not in ("num_classes",)}
    return {"_target_": f"{type(synthesizer).__module__}.{type(synthesizer).__qualname__}", **settings}


def synthesize_dataset(
    teacher: Teacher,
    synthesizer: Synthesizer,
    out: str | Path,
    n: int,
    *,
    class_counts="balanced",
    classes: list[str] | None = None,
    student: nn.Module | None = None,
    draw: str = "synthesize",
    batch_size: int | None = None,
    format: str = "shards",
    shard_size: int = 10_000,
    max_draw_factor: float = 20.0,
    seed: int = 0,
    amp: bool = True,
    progress: bool = True,
    recipe: dict | None = None,
    synthesizer_description: dict | None = None,
    synthesizer_state: dict | None = None,
    log: Callable[[str], None] = print,
) -> SynthesisResult:
    """Write ``n`` samples of ``synthesizer`` for ``teacher`` to the folder ``out`` (see the module docstring).

    ``student`` is what synthesizers that play against a student (ADI, generator methods) see;
    without one they see the teacher itself, which zeroes their disagreement terms, so give
    one (e.g. the student and generator state of a distillation run) for those methods;
    ``synthesizer_state`` (e.g. the trained generator of that run) is loaded once it is bound.
    The synthesizer is bound here; on a continued run its saved state and the random state
    are restored, so that the result is the one of an uninterrupted run.

    Under torchrun every rank draws (its own seed, ``seed + rank``) and labels its batches; the
    ranks keep the same samples (the quota sees every rank's draws in rank order), rank 0 writes
    them into the one folder, with one manifest, and saves every rank's state after each shard. ``recipe`` (the
    CLI's resolved recipe) is what a continuation must match; by default the arguments.
    """
    _check_arguments(n, draw, shard_size, max_draw_factor, format, teacher.info.input_size[0])
    if not dist.is_main_process():
        log = lambda message: None  # noqa: E731 - rank 0 reports for every rank
    info = teacher.info
    device = next(iter([*teacher.model.parameters(), *teacher.model.buffers()])).device
    names = class_names(info.classes, info.num_classes, classes)
    targets = class_targets(class_counts, n, names)
    size = samples_per_shard(shard_size, info.input_size, info.num_classes)
    if size < shard_size:
        log(f"shards of {shard_size} samples would pass 256 MB: writing {size} per shard")
    teacher_entry = {"sha256": teacher_fingerprint(teacher.model), "arch": info.arch, "num_classes": info.num_classes,
                     "input_size": list(info.input_size), "mean": list(info.mean), "std": list(info.std),
                     "classes": list(info.classes), "test_accuracy": info.test_accuracy}
    settings = {"n": n, "class_counts": _plain(class_counts), "classes": names, "draw": draw, "batch_size": batch_size,
                "format": format, "shard_size": shard_size, "max_draw_factor": max_draw_factor, "seed": seed}
    description = {
        "n": n, "classes": names, "image_size": list(info.input_size),
        "class_counts": {"requested": _plain(class_counts), "target": targets},
        "teacher": teacher_entry, "synthesizer": synthesizer_description or describe(synthesizer),
        "draw": draw, "seed": seed, "format": format, "shard_size": size,
        "recipe": recipe if recipe is not None else {**settings, "synthesizer": describe(synthesizer)},
    }
    student = student if student is not None else teacher.model
    seed_everything(seed)  # every draw from here on follows the seed; a continuation restores its state below
    synthesizer.bind(teacher.model, student, info.num_classes, info.input_size, device)
    if synthesizer_state:
        try:
            synthesizer.load_state_dict(synthesizer_state)
        except (KeyError, RuntimeError, ValueError) as exc:
            raise DatafreeError(f"from_run: the synthesizer saved by the run does not fit this recipe's ({first_line(exc)}): "
                                "give the run's own settings (the same experiment and overrides, e.g. data.image_size, "
                                "which sizes the demo generators).") from None
    per_draw = int(batch_size or getattr(synthesizer, "batch_size", 256))
    if draw == "sample" and synthesizer.sample(1) is None:
        raise DatafreeError(f"draw=sample needs a synthesizer that draws images without a synthesis round (a generator, "
                            f"noise), but {type(synthesizer).__name__} optimises every batch: use draw=synthesize.")
    if device.type == "cpu" and draw == "synthesize":  # out of memory, the kernel would kill it without a word
        synthesis_batch, through_student = synthesizer.backward_batch()  # (draw=sample back-propagates nothing)
        check_host_memory(teacher.model, student, batch_size=0, synthesis_batch=synthesis_batch,
                          synthesis_through_student=through_student, pool_bytes=0, input_size=tuple(info.input_size),
                          processes=dist.local_processes())
    writer = SyntheticWriter(out, {**description, "processes": dist.world_size()})
    start = _open(writer)
    for notice in start.notices:
        log(f"notice: {notice}")
    if start.complete:
        log(f"{writer.folder} already holds this data set, complete ({start.count} samples, checksums verified): nothing to do")
        return dist.broadcast_object(_result(writer, start.count, 0, 0.0, already_complete=True)
                                     if dist.is_main_process() else None)

    # Rank 0 holds the run state after the last shard: each rank gets its own part (synthesizer, RNG states);
    # the samples drawn but not yet in a shard (carry) stay with rank 0, which writes them.
    carry = Samples.empty(info.input_size, info.num_classes)
    own, drawn = None, 0
    state = start.state
    if state is not None and int(state.get("world_size", 1)) != dist.world_size():
        log(f"notice: the run state after shard {start.shards} was saved by {state.get('world_size', 1)} processes and "
            f"this run has {dist.world_size()}: continuing with new random draws; the data set stays valid but differs "
            "from an uninterrupted run")
        state = None
    if dist.is_main_process() and state is not None:
        carry = Samples(**state["carry"])
        drawn = int(state["drawn"])
    parts = None if state is None else [{"synthesizer": state["synthesizer"], "rng": state["rng"]}, *state.get("ranks", [])]
    if dist.broadcast_object(parts is not None):
        own = dist.scatter_objects(parts)
    written, carried = start.count, torch.bincount(carry.labels, minlength=info.num_classes).tolist()
    drawn, carried = dist.broadcast_object((drawn, carried))
    if own is not None:
        synthesizer.load_state_dict(own["synthesizer"])
        log(f"continuing {writer.folder} after shard {start.shards} ({start.count} of {n} samples written)")
    quota = Quota(targets, n, info.num_classes, [a + b for a, b in zip(start.class_counts, carried)])
    max_draws = int(max_draw_factor * n)
    aims = bool(getattr(synthesizer, "aims_at_classes", False))

    def next_images() -> tuple[torch.Tensor, torch.Tensor | None]:
        """A drawn batch, and the class each image was made for where the synthesizer says (else None)."""
        synthesizer.class_weights = quota.weights()
        try:
            if draw == "sample":  # no more than can still be kept: the last draw is not a whole batch wasted
                return synthesizer.sample(min(per_draw, n - quota.kept)), None
            batch = synthesizer.synthesize()
            aimed = batch.targets is not None and batch.targets.shape == batch.images.shape[:1]
            return batch.images, batch.targets if aimed else None
        except torch.OutOfMemoryError:
            raise DatafreeError(f"out of GPU memory drawing a batch of {per_draw} images: lower "
                                f"{'batch_size' if draw == 'sample' else 'synthesizer.batch_size'} "
                                f"(e.g. {max(1, per_draw // 2)}).") from None

    if own is not None:
        set_rng_state(own["rng"])  # last: nothing after it may draw random numbers before the loop
    # The shared loop's clock and stop requests; its saves are the writer's shard commits.
    loop = Loop("synthesize", None, None, RunLogger(".", tensorboard=False, enabled=False), hint="")
    first_count = start.count
    pending = [carry] if len(carry) else []
    buffered = sum(carried)
    next_index = start.count + buffered
    bar = tqdm(total=n, initial=quota.kept, desc="synthesize", unit="sample",
               disable=not (progress and dist.is_main_process()), dynamic_ncols=True, leave=False)
    try:
        with loop:
            while not quota.done:
                # A draw can take minutes: every rank agrees now, and all stop before the same draw.
                signum = loop.requested_stop(blocking=True)
                if signum:
                    raise _stopped(signum, writer)
                if drawn >= max_draws:
                    raise _short(quota, names, drawn, max_draw_factor, n, written, synthesizer)
                # A class made too rarely to fill within max_draws is refused as soon as that is clear, not after
                # drawing them all (minutes to hours: a weak teacher under DeepInversion); for a synthesizer that
                # aims, from the rate its aims are answered with each class (Quota.out_of_reach), and not before a
                # quarter of max_draws: one that learns as it draws (the fast recipe's generator) may answer better.
                beyond = quota.out_of_reach(max_draws - drawn, aiming=aims, at_least=max_draws // 4 if aims else 0)
                if beyond:
                    raise _short(quota, names, drawn, max_draw_factor, n, written, synthesizer,
                                 needed=drawn + max(beyond.values()))
                images, made_for = next_images()
                kept, count, made = _kept(label_with_teacher(teacher.model, images, amp), quota,
                                          made_for if aims else None)
                drawn += made
                if kept is not None:
                    kept.indices = torch.arange(next_index, next_index + count)
                    pending.append(kept)
                next_index += count
                buffered += count
                bar.update(count)
                while buffered >= size or (quota.done and buffered):
                    ranks = dist.gather_objects({"synthesizer": synthesizer.state_dict(), "rng": rng_state()})
                    if ranks is not None:
                        block = Samples.cat(pending)
                        shard, rest = block.slice(0, size), block.slice(size)
                        after = {**ranks[0], "ranks": ranks[1:], "world_size": dist.world_size(), "drawn": drawn,
                                 "carry": rest.as_dict()}
                        writer.commit(shard, after, drawn)
                        pending = [rest] if len(rest) else []
                    written += min(size, buffered)
                    buffered = max(0, buffered - size)
        if dist.is_main_process():
            writer.finish()
    finally:
        bar.close()
        synthesizer.class_weights = None
    return dist.broadcast_object(_result(writer, n, n - first_count, loop.elapsed()) if dist.is_main_process() else None)


def _kept(batch: Samples, quota: Quota, made_for: torch.Tensor | None = None) -> tuple[Samples | None, int, int]:
    """What the quota keeps of every rank's draws, decided alike on every rank (it sees all ranks' labels, and the
    classes they were made for where given, in rank order): (the kept samples, gathered on rank 0, else None; how many
    were kept; how many all ranks drew)."""
    drawn = dist.all_gather_objects((batch.labels, None if made_for is None else made_for.to("cpu", torch.int64)))
    labels = [part for part, _ in drawn]
    aims = None if any(a is None for _, a in drawn) else torch.cat([a for _, a in drawn])
    sizes = [len(part) for part in labels]
    keep = quota.accept(torch.cat(labels), aims)
    mine = sum(sizes[: dist.rank()])
    kept = dist.gather_objects(batch.select(keep[mine: mine + len(batch)]))
    return (None if kept is None else Samples.cat(kept)), int(keep.sum()), sum(sizes)


def _open(writer: SyntheticWriter) -> Start:
    """Rank 0 opens (or continues) the folder; the others learn what it found, or stop with its error."""
    if not dist.active():
        return writer.open()
    found, error = None, None
    if dist.is_main_process():
        try:
            found = writer.open()
        except DatafreeError as exc:
            error = exc
    shared = dist.broadcast_object(None if found is None else dataclasses.replace(found, state=None))
    if shared is None:
        if error is not None:
            raise error
        raise ReportedByRankZero("rank 0 could not open the data set folder (its message says why)")
    return found if dist.is_main_process() else shared


def _check_arguments(n, draw: str, shard_size, max_draw_factor, format: str, channels: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise DatafreeError(f"n must be an int >= 1 (the number of samples to write), got {n!r}: set e.g. n=50000.")
    if draw not in DRAWS:
        raise DatafreeError(f"draw={draw!r} is not a choice: 'synthesize' (a synthesis round per batch) or 'sample' "
                            "(images from the synthesizer as it is, e.g. a trained generator).")
    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
        raise DatafreeError(f"shard_size must be an int >= 1 (samples per shard file), got {shard_size!r}.")
    if not max_draw_factor or max_draw_factor < 1:
        raise DatafreeError(f"max_draw_factor must be >= 1 (images drawn per sample kept, at most), got {max_draw_factor!r}.")
    if format not in FORMATS:
        raise DatafreeError(f"format={format!r} is not a choice: give one of {', '.join(FORMATS)}.")
    if format != "shards" and not supports_channels(channels):
        raise DatafreeError(f"format={format} writes PNGs, which hold 1 to 4 channels, but the teacher takes {channels}: "
                            "use format=shards.")


def _plain(value):
    """Recipe values (OmegaConf containers) as JSON-ready Python values."""
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def _result(writer: SyntheticWriter, count: int, new: int, seconds: float, already_complete: bool = False) -> SynthesisResult:
    manifest = writer.manifest
    return SynthesisResult(folder=writer.folder, count=count, class_counts=list(manifest["class_counts"]["written"]),
                           shards=len(manifest["shards"]), bytes=sum(int(f["bytes"]) for f in manifest["files"].values()),
                           drawn=int(manifest["drawn"]), wall_time_s=seconds, samples_this_run=new,
                           already_complete=already_complete)


def _stopped(signum: int, writer: SyntheticWriter) -> Interrupted:
    if not dist.is_main_process():  # rank 0 says what is kept
        return Interrupted(f"stopped by {signal.Signals(signum).name}", signum)
    m = writer.manifest
    return Interrupted(f"stopped by {signal.Signals(signum).name} after {len(m['shards'])} complete shards "
                       f"({m['count']} of {m['n']} samples), which are kept: run the same command to continue.", signum)


def _short(quota: Quota, names: list[str], drawn: int, factor: float, n: int, kept: int,
           synthesizer: Synthesizer, needed: int | None = None) -> DatafreeError:
    """The refusal when classes stay short: after max_draw_factor x n draws, or earlier, when the rate seen so far
    says filling them would take ``needed`` draws in all, past that."""
    short = quota.shortfall()
    listed = ", ".join(f"{names[k]} {have} of {want}" for k, (have, want) in list(short.items())[:5])
    if getattr(synthesizer, "aims_at_classes", False):  # it asked for these classes: the teacher rarely answers them
        why = ("the synthesizer aimed at these classes and the teacher rarely gave them to its images: a teacher that "
               "rarely gives a class at all (check its accuracy on those classes), or a synthesis too short to reach "
               "them (more synthesizer.iterations or a longer-trained generator, from_run=)")
        fixes = "Use class_counts=as_drawn, a histogram closer to what the teacher gives, or a larger max_draw_factor."
    else:
        why = "the synthesizer rarely makes these classes"
        fixes = ("Use class_counts=as_drawn, a histogram closer to what it makes, a synthesizer that aims at classes "
                 "(deepinversion, a conditional generator), or a larger max_draw_factor.")
    if needed is None:
        drew = f"after drawing {drawn} images ({factor:g} x n={n}, max_draw_factor)"
    else:
        drew = (f"after drawing {drawn} images (stopped early: even at a rate well above the one seen, filling them "
                f"would take about {needed} draws, past max_draw_factor's {int(factor * n)} = {factor:g} x n={n})")
    return DatafreeError(
        f"{drew} the teacher labelled too few as "
        f"{listed}{', ...' if len(short) > 5 else ''}: {why} ({kept} samples in complete shards are kept). {fixes}"
    )
