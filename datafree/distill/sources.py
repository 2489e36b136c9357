"""Where the student's batches come from: the one thing that differs between online and offline distillation.

The :class:`~datafree.distill.trainer.Distiller` asks its :class:`BatchSource` for each student batch
(DESIGN.md, "The loop", has the protocol): a :class:`SynthesizerSource` wraps a synthesizer with the
replay pool, the augmentation and the out-of-memory halving of its batch; a :class:`StoredSource`
streams a set written by ``datafree synthesize`` with the teacher's stored logits, so no teacher runs.
"""
from __future__ import annotations

import abc
from typing import Iterator

import torch
from torch import nn

from datafree.distill.pool import SyntheticPool
from datafree.errors import DatafreeError
from datafree.export.reader import SyntheticSet
from datafree.export.stream import SyntheticBatches
from datafree.synthesizers.augment import Augment
from datafree.synthesizers.base import Synthesizer
from datafree.utils.device import available_memory, memory_amount, network_layout
from datafree.utils.logging import RunLogger

# The newest pool images the final sample grid sorts into rows by class.
GRID_IMAGES = 512


class BatchSource(abc.ABC):
    """Where batches come from; the defaults suit a source with nothing to do between rounds."""

    def bind(self, teacher: nn.Module | None, student: nn.Module, *, num_classes: int, input_size: tuple[int, int, int],
             batch_size: int, device: torch.device, logger: RunLogger) -> None:
        self.device, self.batch_size, self.logger = device, int(batch_size), logger

    def new_round(self) -> None:
        """The round's work, before its student steps."""

    def end_round(self) -> None:
        """After the round's student steps."""

    @abc.abstractmethod
    def next(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The next student batch: (inputs on the device, the teacher's logits or None to run the teacher)."""

    def capture_blockers(self) -> list[str]:
        return []

    def backward_batch(self) -> tuple[int, bool]:
        """Images each round back-propagates through the teacher, and whether through the student too
        (:meth:`~datafree.synthesizers.base.Synthesizer.backward_batch`): none for a source without a synthesizer."""
        return 0, False

    def memory_bytes(self) -> int:
        """Memory the source holds at most over the run besides the networks (the replay pool, once full)."""
        return 0

    def student_batch(self) -> int:
        """Images in the student's largest batch: ``trainer.batch_size``, or fewer where the source holds fewer."""
        return self.batch_size

    def follow_schedule(self, factor: float) -> None:
        """The student's learning-rate multiplier (1 at the start, 0 at the end), before each student step."""

    def read_back(self) -> dict[str, torch.Tensor]:
        """Device values to log with the losses (``synth/<name>``), read in the same host copy."""
        return {}

    def row(self) -> dict[str, int]:
        """Counters for summary.csv."""
        return {}

    def grid_images(self, final: bool) -> torch.Tensor | None:
        """Images in [0, 1] for samples.png (after the first round, and ``final``ly), or None for no grid."""
        return None

    # What calibration_batches draw from, as the log names them, and whether the run keeps any (a source that does
    # may still have none yet, before its first batch).
    calibration_images = "training"
    keeps_calibration_images = False

    def calibration_batches(self, count: int, seed: int) -> Iterator[torch.Tensor] | None:
        """``count`` student batches of inputs like those the student trains on, drawn from their own generator
        seeded with ``seed`` (the training's random streams stay untouched), for re-estimating BatchNorm
        statistics (:func:`~datafree.distill.averaging.reestimate_batchnorm`); None where the source keeps none."""
        return None

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        del state


class SynthesizerSource(BatchSource):
    """A synthesizer's batches: each round one ``synthesize()`` into the uint8 replay pool; each student batch
    is ``replay`` from the pool and the rest fresh (``synthesizer.sample(n)`` where it draws cheaply, else the
    round's batch), then augmented. The teacher runs in the student step."""

    def __init__(self, synthesizer: Synthesizer, *, replay: float, pool_capacity: int | str, augment: Augment | None,
                 halve_on_oom: bool):
        self.synthesizer, self.replay = synthesizer, float(replay)
        self.pool_capacity, self.halve_on_oom = pool_capacity, bool(halve_on_oom)
        self.augment = augment if augment is not None else Augment(jitter=2, flip=True)
        self.synthesized = 0  # images made so far (this rank)
        self.fresh: torch.Tensor | None = None  # the round's batch, refilled in place so a captured step can read it
        self.in_round = False
        self._fresh_allocations = 0

    def bind(self, teacher, student, *, num_classes, input_size, batch_size, device, logger) -> None:
        super().bind(teacher, student, num_classes=num_classes, input_size=input_size, batch_size=batch_size,
                     device=device, logger=logger)
        self.augment = self.augment.to(device)
        chosen = self.augment.fit(tuple(input_size[1:]))
        if chosen:
            logger.info(f"trainer.augment.{chosen}")
        # With replay 0 nothing is ever drawn from the pool: keep none (no memory, nothing in every state file).
        capacity = pool_size(self.pool_capacity, tuple(input_size), device, logger) if self.replay > 0 else 0
        self.pool = SyntheticPool(capacity, tuple(input_size), device)
        self.synthesizer.bind(teacher, student, num_classes, tuple(input_size), device)

    @property
    def buffers(self) -> int:
        """How many times a tensor a student batch reads was replaced (``fresh`` allocated anew, e.g. after a halved
        synthesis batch, or the replay pool grown): a captured student step must then be captured again."""
        return self._fresh_allocations + (self.pool.allocations if hasattr(self, "pool") else 0)

    def backward_batch(self) -> tuple[int, bool]:
        return self.synthesizer.backward_batch()

    def memory_bytes(self) -> int:
        return self.pool.capacity_bytes()

    def new_round(self) -> None:
        images = self._synthesize().images
        self.synthesized += len(images)
        self.pool.add(images)
        if self.pool.stopped_growing:  # out of device memory: said once, the run goes on with the smaller pool
            self.logger.warning(self.pool.stopped_growing)
            self.pool.stopped_growing = None
        self._keep(images)

    def _keep(self, images: torch.Tensor) -> None:
        if self.fresh is None or self.fresh.shape != images.shape:
            self.fresh = images.clone()
            self._fresh_allocations += 1
        else:
            self.fresh.copy_(images)
        self.in_round = True

    def end_round(self) -> None:
        self.in_round = False

    @torch.no_grad()
    def next(self) -> tuple[torch.Tensor, None]:
        n_replay = int(round(self.batch_size * self.replay)) if len(self.pool) else 0
        n_fresh = self.batch_size - n_replay
        sampled = self.synthesizer.sample(n_fresh) if n_fresh else None
        if sampled is None and n_fresh:
            sampled = self.fresh[torch.randint(self.fresh.shape[0], (n_fresh,), device=self.fresh.device)]
        parts = [p for p in (sampled, self.pool.sample(n_replay) if n_replay else None) if p is not None]
        inputs = self.augment(torch.cat(parts) if len(parts) > 1 else parts[0])
        return network_layout(inputs, self.device), None

    calibration_images = "replay-pool"

    @property
    def keeps_calibration_images(self) -> bool:
        return self.pool.capacity > 0

    def calibration_batches(self, count: int, seed: int) -> Iterator[torch.Tensor] | None:
        """Batches of the replay pool, shifted and flipped as the student's are (not the augmentation's ``extra``
        modules, which draw from the training's stream); None while the pool is empty."""
        if not len(self.pool):
            return None
        generator = torch.Generator(device=self.device).manual_seed(seed)
        return (network_layout(self.augment.shift_and_flip(self.pool.sample(self.batch_size, generator), generator),
                               self.device) for _ in range(count))

    def capture_blockers(self) -> list[str]:
        blockers = [] if self.augment.capturable else ["the student augmentation has extra (kornia) modules"]
        if not self.synthesizer.sample_capturable:
            blockers.append(f"{type(self.synthesizer).__name__}.sample changes generator between rounds")
        return blockers

    def follow_schedule(self, factor: float) -> None:
        self.synthesizer.follow_schedule(factor)

    def read_back(self) -> dict[str, torch.Tensor]:
        values = dict(self.synthesizer.last_losses)
        if self.synthesizer.skipped_steps is not None:
            values["skipped_steps"] = self.synthesizer.skipped_steps
        return values

    def row(self) -> dict[str, int]:
        return {"images": self.synthesized}

    def grid_images(self, final: bool) -> torch.Tensor | None:
        if final:
            return self.pool.images()[-GRID_IMAGES:].float().div(255) if len(self.pool) else None
        return self.fresh

    def state_dict(self) -> dict:
        # The keys are those of the states written before sources existed, which therefore still resume.
        return {"synthesizer": self.synthesizer.state_dict(), "pool": self.pool.state_dict(),
                "fresh": self.fresh if self.in_round else None, "synthesized": self.synthesized}

    def load_state_dict(self, state: dict) -> None:
        self.synthesizer.load_state_dict(state["synthesizer"])
        self.pool.load_state_dict(state["pool"])
        self.synthesized = int(state["synthesized"])
        if state.get("fresh") is not None:
            self._keep(state["fresh"].to(self.device))

    def _synthesize(self):
        """One synthesis round; out of GPU memory, the batch is halved when allowed, else one line names it."""
        while True:
            try:
                return self.synthesizer.synthesize()
            except torch.OutOfMemoryError:
                size = getattr(self.synthesizer, "batch_size", None)
                if not (self.halve_on_oom and size and size > 1):
                    raise DatafreeError(
                        f"out of GPU memory while synthesizing a batch of synthesizer.batch_size={size}: lower it "
                        f"(e.g. synthesizer.batch_size={max(1, (size or 2) // 2)}), or set "
                        "trainer.halve_synthesis_on_oom=true to halve it automatically."
                    ) from None
            # Outside the except block, so that the failed attempt's tensors can be freed first.
            self.synthesizer.batch_size = size // 2
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            self.logger.info(f"out of GPU memory at synthesizer.batch_size={size}: retrying with {size // 2}")


def pool_size(capacity: int | str, image_shape: tuple[int, int, int], device: torch.device, logger: RunLogger) -> int:
    """The replay pool's capacity in images: as given, or ``auto``: a quarter of the device memory free now (uint8
    images: 3 KB at 32 px, 150 KB at 224 px), at most 2**24 images, on the CPU at most 50,000 (a quarter of the
    memory the machine has free: 50,000 images at 224 px are 7 GiB); the log says what was chosen. The pool takes
    that memory as it fills (:class:`~datafree.distill.pool.SyntheticPool` grows), not up front.
    A given capacity that cannot fit in the free GPU memory is refused, naming the size that fits."""
    per_image = image_shape[0] * image_shape[1] * image_shape[2]
    free = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else None
    if capacity == "auto":
        host = available_memory() if free is None else None
        chosen = (min(2**24, free // 4 // per_image) if free is not None
                  else min(50_000, max(1, host // 4 // per_image)) if host is not None else 50_000)
        size = chosen * per_image
        amount = memory_amount(size)
        why = (f"; {free / 2**30:.0f} GiB free" if free is not None
               else f"; a quarter of the {host / 2**30:.1f} GiB of memory available" if chosen < 50_000 else "")
        logger.info(f"trainer.pool_capacity=auto: {chosen} images ({amount} of uint8 "
                    f"{image_shape[1]}x{image_shape[2]} images{why}), taken as it fills")
        return chosen
    if free is not None and int(capacity) * per_image > 0.9 * free:
        fits = int(0.5 * free // per_image)
        raise DatafreeError(f"trainer.pool_capacity={capacity} images of {image_shape[1]}x{image_shape[2]} need "
                            f"{int(capacity) * per_image / 2**30:.1f} GiB, but {free / 2**30:.1f} GiB of GPU memory is "
                            f"free: lower it (e.g. trainer.pool_capacity={fits}) or set trainer.pool_capacity=auto.")
    return int(capacity)


class StoredSource(BatchSource):
    """A synthetic data set's samples with the teacher's stored logits (crop + flip as on real data): no teacher
    runs. Its batches are cut on the host, so a captured student step gets them copied into its buffers.
    Shards move to the device in windows of ``device_budget_mb``; ``seed`` orders the stream (``seed + rank``)."""

    def __init__(self, synthetic: SyntheticSet, *, crop_padding: int, device_budget_mb: int, seed: int, crop: str = "shift"):
        self.synthetic, self.crop_padding, self.device_budget_mb, self.seed = synthetic, crop_padding, device_budget_mb, seed
        self.crop = crop
        self._stream = None

    def bind(self, teacher, student, *, num_classes, input_size, batch_size, device, logger) -> None:
        super().bind(teacher, student, num_classes=num_classes, input_size=input_size, batch_size=batch_size,
                     device=device, logger=logger)
        self.batches = SyntheticBatches(self.synthetic, self.batch_size, device, seed=self.seed,
                                        crop_padding=self.crop_padding, device_budget_mb=self.device_budget_mb,
                                        channels_last=device.type == "cuda", crop=self.crop)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._stream is None:
            self._stream = iter(self.batches)
        return next(self._stream)

    def student_batch(self) -> int:  # a set smaller than the batch is one batch of all of it
        return min(self.batch_size, len(self.synthetic))

    calibration_images = "stored-set"
    keeps_calibration_images = True

    def calibration_batches(self, count: int, seed: int) -> Iterator[torch.Tensor]:
        """Batches of the stored samples the stream holds now (before the first student batch, those it starts
        from), cropped and flipped as the student's are."""
        return self.batches.draw(count, torch.Generator(device=self.device).manual_seed(seed))

    def capture_blockers(self) -> list[str]:
        return ["a stored set's batches are cut on the host"]

    def row(self) -> dict[str, int]:
        return {"epoch": self.batches.epoch}

    def state_dict(self) -> dict:
        return {"batches": self.batches.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.batches.load_state_dict(state["batches"])
