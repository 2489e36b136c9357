"""Before any work: does the run fit in the device's memory?

On a GPU, a student too large at ``trainer.batch_size`` otherwise fails only after the first round's synthesis
(minutes at 224 px, and a CUDA graph half captured): :func:`check_student_fits` runs one step at the batch and fails in
a second, before anything is synthesized or written, with the key to lower. On the CPU a process out of memory is
killed by the kernel without a message: :func:`check_host_memory` measures what the steps keep per image and
refuses, with the keys to lower, a run whose batches cannot fit in the memory the machine has free.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call

from datafree.errors import DatafreeError
from datafree.utils.device import autocast, available_memory, memory_amount, network_layout
from datafree.utils.untouched import untouched


def check_student_fits(teacher: nn.Module | None, student: nn.Module, *, batch_size: int,
                       input_size: tuple[int, int, int], device: torch.device, amp: bool, label: str = "the student") -> None:
    """One teacher forward and one student forward + backward at ``batch_size`` on random pixels, in training
    mode as the step runs it. Out of device memory: one line naming the batch, the memory and what to lower.

    Nothing of the probe stays (:func:`~datafree.utils.untouched.untouched`): the student's BatchNorm statistics
    (and every other buffer), its modes, its gradients and the RNG streams (a student's dropout draws from them).
    The probe is for GPUs; a CPU swaps rather than failing, so callers skip it there.
    """
    with untouched(student, device):
        try:
            # in the layout the steps feed (channels_last on a GPU), so that the probe runs the steps' own kernels
            inputs = network_layout(torch.rand(batch_size, *input_size, device=device), device)
            student.train()
            with autocast(device, amp):
                if teacher is not None:
                    with torch.no_grad():
                        teacher(inputs)
                output = student(inputs)
            output.float().sum().backward()
            del inputs, output
        except torch.OutOfMemoryError:
            total = torch.cuda.get_device_properties(device).total_memory if device.type == "cuda" else None
            on = f"the {total / 2**30:.0f} GiB device" if total else "the device"
            raise DatafreeError(
                f"{label} does not fit on {on} at trainer.batch_size={batch_size} (with the teacher and the replay "
                f"pool already there): lower trainer.batch_size (e.g. {max(1, batch_size // 2)}) or "
                "trainer.pool_capacity, or choose a smaller student."
            ) from None
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()  # the probe's blocks go back before the allocations that follow


# The probe's batches: two sizes, so that what autograd keeps per image is their difference (the parameters and
# anything else a forward keeps once drop out); two, not one, so that a head with a BatchNorm after its pooling
# (1x1 features) can run in training mode.
_PROBE_BATCHES = (2, 4)


def _storage_key(t: torch.Tensor) -> int:
    storage = t.untyped_storage()
    return getattr(storage, "_cdata", None) or storage.data_ptr()  # meta storages have no address: their C object


def _kept_bytes(forward, inputs: torch.Tensor, weights) -> int:
    """Bytes of the storages autograd keeps for the backward of ``forward(inputs)`` (``weights``' excluded, each
    storage once, views and in-place results included)."""
    own = {_storage_key(w) for w in weights}
    held: dict[int, tuple[torch.Tensor, int]] = {}

    def pack(t: torch.Tensor) -> None:
        key = _storage_key(t)
        if key not in own:
            held[key] = (t, t.untyped_storage().nbytes())  # held here, so that no storage's key is reused meanwhile
        # Nothing goes into the graph: a saved output returned as itself would hold its own grad_fn, a reference
        # cycle Python cannot collect (every activation of the probe would stay in memory).
        return None

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda _: None):
        forward(inputs)
    total = sum(size for _, size in held.values())
    held.clear()  # the graph holds this hook, and the hook these tensors, whose grad_fn is the graph: let them go
    return total


def activation_bytes_per_image(network: nn.Module, input_size: tuple[int, int, int], *, train: bool,
                               device: torch.device) -> int:
    """What a forward with a backward to come keeps per image: the memory a step's activations take grows by this
    with every image of its batch (in ``train`` or eval mode, as the step runs the network; gradients flow to the
    pixels, as in a synthesis step). Counted on the meta device (shapes only: no memory, no arithmetic) with the
    network's weights as meta tensors; a network that cannot run there (TorchScript, an operation without a meta
    kernel) runs on random pixels instead. Leaves the network as it was (:func:`~datafree.utils.untouched.untouched`)."""
    kept = []
    with untouched(network, device):
        network.train(train)
        try:
            weights = {name: t.to("meta") for name, t in (*network.named_parameters(), *network.named_buffers())}
            for n in _PROBE_BATCHES:
                pixels = torch.empty(n, *input_size, device="meta", requires_grad=True)
                kept.append(_kept_bytes(lambda x: functional_call(network, weights, (x,)), pixels, weights.values()))
        except Exception:  # noqa: BLE001 - whatever the meta device refuses, real pixels answer
            kept = []
            for n in _PROBE_BATCHES:
                pixels = torch.rand(n, *input_size, device=device, requires_grad=True)
                kept.append(_kept_bytes(network, pixels, [*network.parameters(), *network.buffers()]))
    return max(0, (kept[1] - kept[0]) // (_PROBE_BATCHES[1] - _PROBE_BATCHES[0]))


def _power_of_two_at_most(n: float) -> int:
    return 1 << max(0, int(n).bit_length() - 1) if n >= 1 else 1


def check_host_memory(teacher: nn.Module | None, student: nn.Module, *, batch_size: int, synthesis_batch: int,
                      synthesis_through_student: bool, pool_bytes: int, input_size: tuple[int, int, int],
                      processes: int = 1, shared_batches: int = 1, available: int | None = None,
                      batch_key: str = "trainer.batch_size", step: str = "a student step") -> None:
    """On the CPU, before any work: does the run's largest step fit in the memory the machine has free?

    Out of memory, a CPU process is not told: the kernel kills it, with no message (at 224 px the fast recipe's
    batches need tens of GiB). The estimate is what autograd keeps for the backward, measured per image on the
    networks themselves (:func:`activation_bytes_per_image`), times the batches: the synthesis step's
    ``synthesis_batch`` images back-propagated through the teacher (and through the student where
    ``synthesis_through_student``; both in eval mode, as synthesis runs them), the student step's ``batch_size``,
    plus the replay pool's ``pool_bytes``; times the ``processes`` sharing the machine. It leaves out the generator,
    the gradients in flight and the allocator's slack, so it is a floor: a run refused here could not have run in
    the memory free, and one let through may still need more.
    ``available`` defaults to what the machine has free now (Linux); where that cannot be read, nothing is checked.
    ``batch_key`` and ``step`` name the student's batch and step in the message (train-teacher's are
    ``data.batch_size`` and a training step). The batches are this process's; with ``global_batch=true`` the
    recipe's keys name a global batch ``shared_batches`` processes share, so the message shows and suggests them so.
    """
    available = available_memory() if available is None else available
    if available is None:
        return
    device = torch.device("cpu")
    per_student = activation_bytes_per_image(student, input_size, train=True, device=device) if batch_size else 0
    per_synthesis = 0
    if synthesis_batch:  # synthesis runs both networks in eval mode
        per_synthesis = sum(activation_bytes_per_image(network, input_size, train=False, device=device)
                            for network in (teacher, student if synthesis_through_student else None)
                            if network is not None)
    synthesis, student_step = synthesis_batch * per_synthesis, batch_size * per_student
    need = processes * (max(synthesis, student_step) + pool_bytes)
    if need <= available:
        return
    side = f"{input_size[1]}x{input_size[2]}"
    parts = []
    if synthesis:
        parts.append(f"a synthesis step at synthesizer.batch_size={synthesis_batch * shared_batches} keeps "
                     f"{memory_amount(synthesis)} of activations ({memory_amount(per_synthesis)} an image at {side})")
    if batch_size:
        parts.append(f"{step} at {batch_key}={batch_size * shared_batches} {memory_amount(student_step)}")
    if pool_bytes:
        parts.append(f"the replay pool {memory_amount(pool_bytes)}")
    per_process = available / processes
    lower = []
    if pool_bytes > 0.3 * per_process:  # clearly more than the auto pool takes: a quarter of the memory free when sized
        quarter = int(per_process / 4 // (input_size[0] * input_size[1] * input_size[2]))
        lower.append(f"trainer.pool_capacity (e.g. {quarter}, a quarter of the memory, which "
                     "trainer.pool_capacity=auto takes)")
        pool_bytes = min(pool_bytes, per_process / 4)
    room = per_process * 0.8 - pool_bytes  # a floor is measured: leave a fifth for what it leaves out
    if (synthesis > room and per_synthesis > room) or (student_step > room and per_student > room):
        lower.append("the image size (data.image_size) or the networks: one image's step alone does not fit")
    else:
        if synthesis > room:
            lower.append(f"synthesizer.batch_size (e.g. {shared_batches * _power_of_two_at_most(room / per_synthesis)})")
        if student_step > room:
            lower.append(f"{batch_key} (e.g. {shared_batches * _power_of_two_at_most(room / per_student)})")
    fix = "lower " + " and ".join(lower) if lower else "lower the batches"
    each = f"for each of its {processes} processes on this machine, " if processes > 1 else ""
    share = f" (global_batch=true: {shared_batches} processes share each batch)" if shared_batches > 1 else ""
    raise DatafreeError(
        f"this run needs at least {memory_amount(need)} of memory on the CPU and {memory_amount(available)} is available: "
        f"{each}{'; '.join(parts)}{share}. A CPU run out of memory is killed without a word: {fix}, or run it on a GPU."
    )
