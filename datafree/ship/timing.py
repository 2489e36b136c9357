"""Latency and throughput with ``torch.utils.benchmark``: warm-up, then repeated blocks until the measurement is
stable, reported as the median and the spread (interquartile range) per call."""
from __future__ import annotations

import logging
import platform
import statistics
import time
from dataclasses import asdict, dataclass

import torch

from datafree.ship.runners import Runner


def _benchmark():
    """``torch.utils.benchmark``, imported without the line its C++-extension helper logs on a machine whose CUDA
    toolkit has no runtime (a CPU build of torch): nothing is compiled here."""
    logger = logging.getLogger("torch.utils.cpp_extension")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        from torch.utils import benchmark
    finally:
        logger.setLevel(level)
    return benchmark


def cpu_name() -> str:
    """The CPU a latency was measured on, as the user knows it (Linux: /proc/cpuinfo's model name; elsewhere what
    :mod:`platform` says, often only the architecture)."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@dataclass
class Timing:
    """Seconds per call, in milliseconds: the median, the interquartile range, and how many calls were timed."""

    median_ms: float
    iqr_ms: float
    calls: int
    threads: int

    def as_dict(self) -> dict:
        return asdict(self)


def _measure(runner: Runner, images: torch.Tensor, threads: int, min_run_time: float, warmup: int) -> Timing:
    for _ in range(warmup):  # first calls pay for allocation, kernel selection, lazy initialisation
        runner.call(images)
    if images.device.type == "cuda":
        torch.cuda.synchronize(images.device)
    timer = _benchmark().Timer(stmt="runner.call(images)", globals={"runner": runner, "images": images},
                            num_threads=threads)
    # blocked_autorange sizes its blocks to run at least min_run_time in all (the CUDA queue is synchronised by
    # the Timer around each block on a GPU).
    measurement = timer.blocked_autorange(min_run_time=min_run_time)
    calls = int(sum(measurement.number_per_run for _ in measurement.raw_times))
    return Timing(median_ms=measurement.median * 1e3, iqr_ms=measurement.iqr * 1e3, calls=calls, threads=threads)


def cpu_latency(runner: Runner, input_size: tuple[int, int, int], threads: int, min_run_time: float = 0.5,
                warmup: int = 5) -> Timing:
    """One image at a time on the CPU (``threads`` intra-op threads): what an edge device or a request sees."""
    image = torch.rand(1, *input_size)
    return _measure(runner.to(torch.device("cpu")), image, threads, min_run_time, warmup)


def gpu_throughput(runner: Runner, input_size: tuple[int, int, int], batch: int, device: torch.device,
                   min_run_time: float = 1.0, warmup: int = 5) -> tuple[Timing, float]:
    """(the timing of one batch of ``batch`` images on the GPU, images per second)."""
    on_device = runner.to(device)
    images = torch.rand(batch, *input_size, device=device)
    timing = _measure(on_device, images, torch.get_num_threads(), min_run_time, warmup)
    return timing, batch / (timing.median_ms / 1e3)


@torch.inference_mode()
def quick_cpu_latency(runner: Runner, input_size: tuple[int, int, int], calls: int = 20, warmup: int = 3) -> Timing:
    """A rough batch-1 CPU latency on the threads torch has: ``calls`` single calls timed one by one after
    ``warmup``, their median and interquartile range. What a distill run's headline shows, in milliseconds of work
    rather than :func:`cpu_latency`'s second of benchmark (``datafree report`` measures properly)."""
    runner = runner.to(torch.device("cpu"))
    image = torch.rand(1, *input_size)
    for _ in range(warmup):
        runner.call(image)
    seconds = []
    for _ in range(calls):
        started = time.perf_counter()
        runner.call(image)
        seconds.append(time.perf_counter() - started)
    quartiles = statistics.quantiles(seconds, n=4)
    return Timing(median_ms=statistics.median(seconds) * 1e3, iqr_ms=(quartiles[2] - quartiles[0]) * 1e3,
                  calls=calls, threads=torch.get_num_threads())
