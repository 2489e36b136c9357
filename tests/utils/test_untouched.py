"""A probe run inside untouched() leaves the network and the random streams as they were."""
import torch
from torch import nn

from datafree.utils.untouched import untouched


def test_a_training_pass_and_a_backward_leave_no_trace():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.5), nn.Flatten(), nn.Linear(144, 2))
    net.eval()
    net[1].train()  # a submodule in another mode than its parent keeps its own
    net[0].weight.grad = torch.ones_like(net[0].weight)
    grad = net[0].weight.grad
    before = {k: v.clone() for k, v in net.state_dict().items()}
    torch.manual_seed(1)
    expected = torch.rand(3)  # what the stream gives next when nothing draws from it
    torch.manual_seed(1)
    with untouched(net, "cpu"):
        net.train()
        net(torch.rand(4, 3, 8, 8)).sum().backward()  # moves the BatchNorm statistics, draws dropout masks
        assert not torch.equal(net[1].running_mean, before["1.running_mean"])
    assert torch.equal(torch.rand(3), expected)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert net[0].weight.grad is grad and torch.equal(grad, torch.ones_like(grad)) and net[4].weight.grad is None
    assert not net.training and net[1].training and not net[2].training
