"""Before any work: does one student step at the chosen batch fit in the device's memory?

A student too large for the device at ``trainer.batch_size`` otherwise fails only after the first round's
synthesis (minutes at 224 px, and a CUDA graph half captured); this probe fails in a second, before anything
is synthesized or written, with the key to lower.
"""
from __future__ import annotations

import torch
from torch import nn

from datafree.errors import DatafreeError
from datafree.utils.device import autocast, network_layout
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
