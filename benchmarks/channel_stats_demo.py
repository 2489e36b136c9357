"""The CPU demo (``datafree distill``) with the BatchNorm prior's per-channel statistics computed one of four ways.

    python benchmarks/channel_stats_demo.py WAY SEED [OVERRIDES ...]
    for way in var_mean var_mean_ulp_up native_batch_norm batch_norm_update_stats; do
        for seed in 0 1 2 3 4; do python benchmarks/channel_stats_demo.py $way $seed; done; done

WAY sets the forward of ``datafree.ops.hooks.channel_stats`` (its backward unchanged) before the CLI runs:
``var_mean`` is what the CPU used before 2026-12-06, ``batch_norm_update_stats`` what it uses now,
``native_batch_norm`` the first candidate, and ``var_mean_ulp_up`` a control: ``var_mean``'s variance moved one
float32 step up, a change of nothing but rounding, to show how far rounding alone moves the demo's student. The last
line printed is WAY, SEED and the figures the demo printed. One torch thread (``cpu_threads=auto`` on 2 cores):
a run repeats to the last digit on the same processor.
"""
from __future__ import annotations

import contextlib
import io
import re
import sys
import tempfile

import torch

from channel_stats_cpu import WAYS as KERNELS, channel_stats_by, with_var_mean  # benchmarks/: the ways, timed there
from datafree.cli import main
from datafree.ops import hooks


def _ulp_up(x):
    mean, var = with_var_mean(x)
    return mean, torch.nextafter(var, torch.full_like(var, float("inf")))


WAYS = {**KERNELS, "var_mean_ulp_up": _ulp_up}


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] not in WAYS:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(WAYS)}}} SEED [OVERRIDES ...]")
    way, seed = sys.argv[1], int(sys.argv[2])
    hooks._ChannelStats.forward = channel_stats_by(WAYS[way])
    printed = io.StringIO()
    with tempfile.TemporaryDirectory() as run, contextlib.redirect_stdout(printed):
        code = main(["distill", f"seed={seed}", "progress=false", f"hydra.run.dir={run}", *sys.argv[3:]])
    figures = re.findall(r"^(teacher|student|baseline)[^\n]*?test accuracy (\d+\.\d+%)", printed.getvalue(), re.M)
    print(way, f"seed={seed}", " ".join(f"{who} {value}" for who, value in figures))
    sys.exit(code)
