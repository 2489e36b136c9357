"""Pick the device and the fast-math settings once, in one place."""
from __future__ import annotations

import contextlib
import os

import torch
from torch import nn

from datafree.errors import DatafreeError
from datafree.utils.dist import local_rank


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' -> this rank's GPU if there is one, else the CPU."""
    if name in (None, "auto"):
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DatafreeError(f"device {name!r} was asked for but no CUDA GPU is visible: set device=cpu or device=auto.")
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", local_rank() % torch.cuda.device_count())
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return device


def set_deterministic(enabled: bool) -> None:
    """Deterministic kernels where torch has them (``deterministic=true``): repeatable GPU runs, somewhat slower.

    CPU runs repeat bitwise without it; on a GPU some kernels (atomics in scatter/index_add, cuDNN
    algorithm search) vary from run to run unless switched off here.
    """
    if not enabled:
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


def autocast(device: torch.device, enabled: bool = True):
    """bf16 autocast on GPUs; a no-op elsewhere (CPU bf16 is slower than fp32 for small nets)."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def depthwise_with_batchnorm(module: nn.Module) -> bool:
    """Whether a network is built of depthwise convolutions with BatchNorm: MobileNets, EfficientNets, MnasNet,
    ShuffleNet (not ConvNeXt, whose depthwise convolutions sit between LayerNorms, nor grouped-only networks)."""
    return (any(isinstance(m, nn.Conv2d) and 1 < m.groups == m.in_channels for m in module.modules())
            and any(isinstance(m, nn.BatchNorm2d) for m in module.modules()))


def channels_last_on_cpu(module: nn.Module) -> bool:
    """Whether a network trains channels_last on the CPU (:func:`network_layout`): one built of depthwise
    convolutions with BatchNorm, or one whose class asks for it (a class attribute ``channels_last_on_cpu = True``,
    as the demo's small CNNs have: a network whose steps were measured faster so; a user's class may set it too)."""
    return depthwise_with_batchnorm(module) or any(getattr(m, "channels_last_on_cpu", False) is True
                                                   for m in module.modules())


def network_layout(x, device: torch.device):
    """A tensor or module in the layout the networks run in: channels_last on a GPU (faster convolutions).

    On the CPU tensors stay as they are, and so do networks, except those :func:`channels_last_on_cpu` names: the
    networks built of depthwise convolutions with BatchNorm, whose training steps ran 1.3-2.3x faster channels_last
    on the 2-core machine, and the demo's small CNNs (the teacher's step 1.19-1.23x, the demo alone on the machine
    1.01-1.30x; beside a second process no faster). The other networks ran 0.70-1.38x, from pass to pass of the
    same measurement as much as from network to network, and slower for a torchvision ResNet-18 in every pass
    (``benchmarks/cpu_layout.py``, docs/benchmarks.md "Memory layout on the CPU"). A channels_last network takes
    NCHW inputs as they come: its first convolution gives channels_last outputs.
    """
    if torch.device(device).type != "cuda":
        if isinstance(x, nn.Module) and channels_last_on_cpu(x):
            return x.to(memory_format=torch.channels_last)
        return x
    if isinstance(x, nn.Module):
        return x.to(memory_format=torch.channels_last)
    return x.contiguous(memory_format=torch.channels_last)


def generator_layout(generator: nn.Module) -> nn.Module:
    """A synthesizer's generator in the layout it trains fastest in: channels_last, on the CPU and on a GPU.

    On the 2-core machine a DCGAN generator's training step (upsampling, 3x3 convolutions, BatchNorm) ran 1.26-1.52x
    faster channels_last at 16-128 px, and a run of the fast recipe at 64 px 1.29-1.32x (``benchmarks/cpu_layout.py
    --generator --generator-rounds 4``, docs/benchmarks.md "The synthesizers' generators"). On one H100 the fast
    recipe's whole generator step, the teacher's forward and backward in it (bf16, CUDA graphs), ran 1.08x faster so
    at 32 px (ResNet-34 teacher), 1.17x at 64 px and 1.21x at 128 px (torchvision ResNet-50 teacher)
    (``benchmarks/size_a_run.py --generator-layout``). The synthesizers hand its images on NCHW (``contiguous()``,
    as those GPU timings did), and a teacher or student keeps the layout :func:`network_layout` gave it.
    """
    return generator.to(memory_format=torch.channels_last)


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, which containers and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def cpu_threads(setting="auto") -> int:
    """The intra-op threads for CPU work: ``auto`` is half the usable cores (at least 1), an int is taken as it is.

    Why half: PyTorch's default (every core) collapses when another busy process shares the cores, since its
    threads wait for each other at every operation while one of them is off the CPU (measured on 2 cores with
    one busy neighbour: docs/benchmarks.md, "CPU threads"); half leaves room for a neighbour and loses little
    on the small networks CPU runs use. A CPU result depends on the thread count (reductions are split
    differently), and repeats bitwise for the same count.
    """
    if setting in (None, "auto"):
        return max(1, usable_cores() // 2)
    if isinstance(setting, bool) or not isinstance(setting, int) or setting < 1:
        raise DatafreeError(f"cpu_threads must be auto or an int >= 1, got {setting!r}: e.g. cpu_threads=auto.")
    return setting


@contextlib.contextmanager
def threads_for(setting="auto"):
    """Inside, torch runs CPU operations on :func:`cpu_threads` threads; the previous count comes back after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(cpu_threads(setting))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def memory_amount(n: float) -> str:
    """Bytes as people read them: GiB from 1 GiB, MiB from 1 MiB, else kB (50,000 images at 32 px: 146 MiB)."""
    return (f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB" if n >= 2**20
            else f"{n / 2**10:.0f} kB")


def available_memory() -> int | None:
    """Bytes of memory available to new allocations: Linux's MemAvailable, or less where this process's control
    group leaves less (a container's memory limit: docker --memory, a Kubernetes limit, whose kernel kills the
    process at the limit while MemAvailable still reports the host's memory); None where neither can be read."""
    known = [v for v in (_meminfo_available(), cgroup_memory_room()) if v is not None]
    return min(known) if known else None


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


# (folder under the cgroup mount, limit file, usage file, memory.stat's reclaimable page cache) for cgroup v2, v1
_CGROUP_FILES = {"v2": ("", "memory.max", "memory.current", "inactive_file"),
                 "v1": ("memory", "memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")}


def cgroup_memory_room(proc_cgroup: str | os.PathLike = "/proc/self/cgroup",
                       mount: str | os.PathLike = "/sys/fs/cgroup") -> int | None:
    """Bytes this process's memory control group and those above it still let it take: limit - usage + the
    inactive file cache the kernel reclaims before it kills, the least over the groups that have a limit; None
    where none has one (or nothing can be read). cgroup v2 (``0::/path``) and v1 (``N:memory:/path``); a group
    whose folder is not under the mount (a container sees its own group as the mount's root) is looked for higher."""
    from pathlib import Path

    try:
        lines = Path(proc_cgroup).read_text().splitlines()
    except OSError:
        return None
    rooms = []
    for line in lines:
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        version = "v2" if controllers == "" else "v1" if "memory" in controllers.split(",") else None
        if version is None:
            continue
        folder, limit_file, usage_file, cache_key = _CGROUP_FILES[version]
        base, parts = Path(mount) / folder, [p for p in path.split("/") if p]
        for depth in range(len(parts), -1, -1):
            group = base.joinpath(*parts[:depth])
            limit, usage = _read_bytes(group / limit_file), _read_bytes(group / usage_file)
            if limit is None or usage is None or limit >= 2**60:  # "max", or v1's "no limit" (2**63 rounded)
                continue
            rooms.append(max(0, limit - usage + _memory_stat(group / "memory.stat", cache_key)))
    return min(rooms) if rooms else None


def _read_bytes(path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _memory_stat(path, key: str) -> int:
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key and value.strip().isdigit():
                return int(value)
    except OSError:
        pass
    return 0
