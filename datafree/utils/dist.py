"""Several processes under ``torchrun``: rank, world size, the process group and the few collectives datafree uses.

One process is the default, and then every helper here is a no-op, so the loops call them
unconditionally. Under ``torchrun`` (``WORLD_SIZE`` > 1) the CLI joins the process group
once (:func:`init`): gloo for CPU tensors, and NCCL for CUDA tensors when the run uses GPUs
(one backend per device type, ``cpu:gloo,cuda:nccl``), so that small host-side exchanges (stop
requests, objects) never touch the GPU. Every collective has the recipe's ``dist_timeout_s``:
a rank that died or hangs makes the others fail with an error instead of waiting for ever.

What is replicated and what is per rank:

* replicated (identical on every rank): the student (DDP), every module the student step
  trains with it (hint adapters: gradients averaged), a generator trained against the
  student (gradients averaged), the NaN/Inf skip decisions of those optimisers, the stop
  decision and the clock of a time budget;
* per rank: the synthesizer's random draws (``seed + rank``), DeepInversion's pixels, the fast
  synthesizer's generator, the replay pool, the teacher's BatchNorm-statistics loss (on the
  rank's own batch), and every random number generator (each rank saves its own state).
"""
from __future__ import annotations

import datetime
import os
from typing import Any, Iterable

import torch
from torch import nn

from datafree.errors import DatafreeError


def rank() -> int:
    return int(os.environ.get("RANK", 0))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", 1))


def local_processes() -> int:
    """How many of the run's processes share this machine (torchrun's LOCAL_WORLD_SIZE)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", world_size()))


def is_main_process() -> bool:
    return rank() == 0


def is_distributed() -> bool:
    """Whether this process is one of several (launched by torchrun)."""
    return world_size() > 1


def active() -> bool:
    """Whether this process has joined a process group of several ranks (:func:`init`)."""
    return is_distributed() and torch.distributed.is_available() and torch.distributed.is_initialized()


# -- the process group -------------------------------------------------------------------------------
def init(device: torch.device | str, timeout_s: float) -> bool:
    """Join the process group of a torchrun launch; True when this call created it.

    A no-op for one process or when already joined. ``device`` (the run's) picks the
    backends: gloo only on the CPU, gloo + NCCL when the run uses GPUs.
    """
    if not is_distributed() or torch.distributed.is_initialized():
        return False
    missing = [name for name in ("RANK", "MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
    if missing:
        raise DatafreeError(f"WORLD_SIZE={world_size()} is set but {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} "
                            "not: launch several processes with torchrun (torchrun --nproc_per_node=N -m datafree ...), "
                            "or unset WORLD_SIZE for one process.")
    if not isinstance(timeout_s, (int, float)) or isinstance(timeout_s, bool) or timeout_s <= 0:
        raise DatafreeError(f"dist_timeout_s must be a positive number of seconds, got {timeout_s!r}: e.g. dist_timeout_s=600.")
    # torch._dynamo, imported lazily by the first optimiser step, keeps references to the process group that
    # exists when it is imported (torch 2.14), so destroy_process_group() cannot free it: gloo's worker threads
    # live on into interpreter shutdown, where dropping the last collective's tensors needs the GIL and aborts
    # the process (SIGABRT, "terminate called without an active exception") now and then. Imported before the
    # group exists, it holds nothing and shutdown() joins those threads.
    import torch._dynamo as _dynamo  # noqa: F401 (a bare "import torch._dynamo" would make torch local here)

    backend = "gloo"
    if torch.device(device).type == "cuda":
        torch.cuda.set_device(local_rank() % torch.cuda.device_count())
        backend = "cpu:gloo,cuda:nccl"
    torch.distributed.init_process_group(backend, timeout=datetime.timedelta(seconds=float(timeout_s)))
    return True


def shutdown() -> None:
    """Leave the process group (the end of a command)."""
    if active():
        torch.distributed.destroy_process_group()


class ReportedByRankZero(DatafreeError):
    """An error rank 0 reports for every rank: the other ranks stop with it and print nothing."""


# How long a rank other than 0 waits for rank 0's refusal before printing its own: the same check refuses every
# rank within moments of one another, while a rank refused alone waits this long and then speaks for itself.
SAME_REFUSAL_WAIT_S = 5.0


def said_by_rank_zero(message: str) -> bool:
    """Whether rank 0 refuses with the same ``message``, so that this rank need not print it again: rank 0 posts its
    refusal in the process group's key-value store (torchrun's agent keeps it), the other ranks compare theirs.
    False where the store cannot tell (one process, rank 0 itself, no answer in :data:`SAME_REFUSAL_WAIT_S`)."""
    if not active():
        return False
    key = f"datafree/refusal/{os.environ.get('TORCHELASTIC_RESTART_COUNT', 0)}"  # a restarted group's own
    try:
        store = torch.distributed.distributed_c10d._get_default_store()
        if is_main_process():
            store.set(key, message)
            return False
        store.wait([key], datetime.timedelta(seconds=SAME_REFUSAL_WAIT_S))
        return store.get(key).decode() == message
    except Exception:  # noqa: BLE001 - a store gone or slow: every rank says its own
        return False


def require_one_process(what: str) -> None:
    """Refuse a command that runs in one process only."""
    if is_distributed():
        raise DatafreeError(f"{what} runs in one process: run it without torchrun (it uses one GPU or the CPU).")


def lost_contact(error: BaseException) -> bool:
    """Whether ``error`` is a collective that failed because another rank died, hung or became unreachable."""
    if isinstance(error, getattr(torch.distributed, "DistError", ())):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and any(mark in text for mark in (
        "gloo", "Gloo", "NCCL", "Connection reset", "Connection closed", "Broken pipe", "Timed out", "timed out"))


# -- tensors -------------------------------------------------------------------------------------------
def all_reduce_(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """``tensor`` reduced over the ranks, in place (``sum`` or ``max``); unchanged in one process."""
    if active():
        reduce_op = {"sum": torch.distributed.ReduceOp.SUM, "max": torch.distributed.ReduceOp.MAX}[op]
        torch.distributed.all_reduce(tensor, op=reduce_op)
    return tensor


def mean(tensor: torch.Tensor) -> torch.Tensor:
    """The mean over the ranks of ``tensor`` (a new tensor; ``tensor`` itself in one process)."""
    if not active():
        return tensor
    return all_reduce_(tensor.detach().clone()).div_(world_size())


def total(count: int) -> int:
    """``count`` summed over the ranks (e.g. images synthesized by all of them)."""
    if not active():
        return count
    value = torch.tensor([int(count)], dtype=torch.int64)
    torch.distributed.all_reduce(value)
    return int(value.item())


def barrier() -> None:
    """Wait for every rank (through gloo: no GPU work is waited for)."""
    if active():
        torch.distributed.all_reduce(torch.zeros(1))


def broadcast_module(module: nn.Module, src: int = 0) -> None:
    """Rank ``src``'s parameters and buffers on every rank (a module that must start identical)."""
    if not active():
        return
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            torch.distributed.broadcast(tensor.data, src)


def broadcast_buffers(module: nn.Module, src: int = 0) -> None:
    """Rank ``src``'s buffers (BatchNorm running statistics) on every rank, as DDP does before each forward pass."""
    if not active():
        return
    with torch.no_grad():
        for tensor in module.buffers():
            torch.distributed.broadcast(tensor.data, src)


def average_gradients(grads: Iterable[torch.Tensor | None]) -> None:
    """Replace each gradient by its mean over the ranks, in place: one all-reduce per dtype.

    For parameters trained outside DDP (modules that join the student step, a generator
    updated with ``torch.autograd.grad``, which DDP does not support). ``None`` entries are
    skipped; they must be the same on every rank (they are: the same graph on every rank).
    """
    if not active():
        return
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for grad in grads:
        if grad is not None:
            by_dtype.setdefault(grad.dtype, []).append(grad)
    for group in by_dtype.values():
        flat = torch.cat([g.reshape(-1) for g in group])
        torch.distributed.all_reduce(flat)
        flat.div_(world_size())
        offset = 0
        for g in group:
            g.copy_(flat[offset: offset + g.numel()].view_as(g))
            offset += g.numel()


# -- modules -------------------------------------------------------------------------------------------
def data_parallel(module: nn.Module, device: torch.device) -> nn.Module:
    """``module`` wrapped in DistributedDataParallel under torchrun (rank 0's weights on every rank), else itself.

    Run the training forward pass through the wrapper (it averages the gradients during the
    backward pass); evaluate, save and load the module itself.
    """
    if not active():
        return module
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)


def sync_batchnorm(module: nn.Module, device: torch.device, key: str) -> nn.Module:
    """``module``'s BatchNorm layers as SyncBatchNorm under torchrun (statistics over the global batch).

    One process: the module unchanged. SyncBatchNorm runs on GPUs only; ``key`` is the recipe key
    that asked for it, named in the error on the CPU.
    """
    if not is_distributed():
        return module
    if device.type != "cuda":
        raise DatafreeError(f"{key}=true needs GPUs (torch's SyncBatchNorm runs on CUDA only), but this run is on "
                            f"{device.type}: set {key}=false.")
    return nn.SyncBatchNorm.convert_sync_batchnorm(module)


# -- Python objects (through gloo) ----------------------------------------------------------------------
def all_gather_objects(obj: Any) -> list:
    """Every rank's ``obj``, in rank order (``[obj]`` in one process)."""
    if not active():
        return [obj]
    gathered: list = [None] * world_size()
    torch.distributed.all_gather_object(gathered, obj)
    return gathered


def gather_objects(obj: Any, dst: int = 0) -> list | None:
    """Every rank's ``obj`` on rank ``dst``, in rank order; None on the other ranks."""
    if not active():
        return [obj]
    gathered = [None] * world_size() if rank() == dst else None
    torch.distributed.gather_object(obj, gathered, dst=dst)
    return gathered


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    if not active():
        return obj
    box = [obj if rank() == src else None]
    torch.distributed.broadcast_object_list(box, src=src)
    return box[0]


def scatter_objects(objs: list | None, src: int = 0) -> Any:
    """Rank ``src`` hands ``objs[r]`` to rank r; each rank gets its own."""
    if not active():
        return objs[0]
    box = [None]
    torch.distributed.scatter_object_list(box, objs if rank() == src else None, src=src)
    return box[0]


# -- stop requests and the clock, agreed ------------------------------------------------------------------
class Agreement:
    """What every rank must decide alike at a step boundary: whether to stop, and how much time has passed.

    Each rank offers its own stop request (the signal it received, or 0) and its own clock;
    the ranks agree on the largest of each. The exchange is started at one boundary and read
    at the next (a non-blocking all-reduce through gloo), so that it never stalls a step: a
    signal is acted on one boundary after it arrived, by every rank at the same one.
    """

    def __init__(self, elapsed: float = 0.0):
        self.signum: int | None = None
        self.elapsed = float(elapsed)
        self._pending = None  # (work, buffer)

    def exchange(self, signum: int | None, elapsed: float) -> None:
        """Read the exchange started at the previous boundary (``signum``/``elapsed``), start this boundary's."""
        self.settle()
        buffer = torch.tensor([float(signum or 0), float(elapsed)], dtype=torch.float64)
        work = torch.distributed.all_reduce(buffer, op=torch.distributed.ReduceOp.MAX, async_op=True)
        self._pending = (work, buffer)

    def settle(self) -> None:
        """Wait for the exchange in flight and take its result."""
        if self._pending is None:
            return
        (work, buffer), self._pending = self._pending, None
        work.wait()
        signum, elapsed = buffer.tolist()
        self.signum = int(signum) or None
        self.elapsed = max(self.elapsed, elapsed)


def agreed_stop(signum: int | None) -> int | None:
    """The signal any rank received (blocking; for loops whose steps are long, e.g. synthesis draws)."""
    if not active():
        return signum
    flag = torch.tensor([float(signum or 0)], dtype=torch.float64)
    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
    return int(flag.item()) or None
