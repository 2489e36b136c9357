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



class _RecordsMoves(nn.Linear):
    """Remembers where it was last moved to (without moving: the test needs no GPU)."""

    def to(self, device):
        self.moved_to = torch.device(device)
        return self


def test_a_runner_moves_its_module_even_after_another_runner_moved_it():
    """report times the CPU latency first, which moves the shared module to the CPU in place, then the GPU
    throughput: that runner must move the module back rather than trust where it was made (found on a GPU)."""
    net = _RecordsMoves(2, 2)
    on_gpu = torch_runner("net", net, torch.device("cuda"))
    on_gpu.to(torch.device("cpu"))
    assert net.moved_to == torch.device("cpu")
    assert on_gpu.to(torch.device("cuda")).device == torch.device("cuda")
    assert net.moved_to == torch.device("cuda")
