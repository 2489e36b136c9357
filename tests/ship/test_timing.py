"""datafree.ship.timing: the headline's quick latency times what it is given."""
import time

import torch
from torch import nn

from datafree.ship.runners import torch_runner
from datafree.ship.timing import cpu_name, quick_cpu_latency


class _Sleeps(nn.Module):
    def forward(self, x):
        time.sleep(0.002)
        return x.mean((2, 3))


def test_quick_latency_measures_a_known_delay_per_call():
    timing = quick_cpu_latency(torch_runner("sleeps", _Sleeps()), (3, 8, 8), calls=10)
    assert 2.0 <= timing.median_ms < 20.0 and timing.iqr_ms >= 0
    assert timing.calls == 10 and timing.threads == torch.get_num_threads()


def test_the_cpu_has_a_name():
    assert cpu_name().strip()
