"""Start weights (student.checkpoint, train-teacher's teacher.checkpoint): what is adapted, and what is refused."""
import pytest
import torch
import torchvision

from datafree.errors import DatafreeError
from datafree.teachers.state_dicts import load_start_weights


def _resnet18(channels: int, classes: int = 10) -> torch.nn.Module:
    net = torchvision.models.resnet18(num_classes=classes)
    net.conv1 = torch.nn.Conv2d(channels, 64, 7, 2, 3, bias=False)
    return net


def _load(net, state):
    return load_start_weights(net, state, "student.checkpoint 'w.pth'", "the student torchvision:resnet18", "FIX.",
                              lambda channels: f"or OTHER({channels})")


def test_grey_weights_are_repeated_for_colour_and_divided_by_the_count():
    torch.manual_seed(0)
    grey, net = _resnet18(1), _resnet18(3)
    notes = _load(net, grey.state_dict())
    assert torch.equal(net.conv1.weight, grey.conv1.weight.repeat(1, 3, 1, 1) / 3)
    assert ("student.checkpoint 'w.pth': its first convolution (conv1.weight) takes 1 channel (grey); repeated for the "
            "network's 3 and divided by 3") in notes


@pytest.mark.parametrize("channels", [3, 4])
def test_colour_weights_are_summed_for_grey(channels):
    torch.manual_seed(0)
    colour, net = _resnet18(channels), _resnet18(1)
    notes = _load(net, colour.state_dict())
    assert torch.equal(net.conv1.weight, colour.conv1.weight.sum(1, keepdim=True))
    assert (f"student.checkpoint 'w.pth': its first convolution (conv1.weight) takes {channels} channels; summed into "
            "the network's 1 (grey)") in notes


@pytest.mark.parametrize("have, need", [(4, 3), (3, 4), (2, 3)])
def test_other_channel_counts_are_refused_naming_both(have, need):
    """RGBA weights cut to RGB (the 4th channel dropped) or RGB ones spread over RGBA would start from a network
    that answers otherwise than the one saved: refused, naming the layer, both counts and what to set."""
    with pytest.raises(DatafreeError) as refused:
        _load(_resnet18(need), _resnet18(have).state_dict())
    assert str(refused.value) == (
        f"student.checkpoint 'w.pth': its first convolution (conv1.weight) takes {have} channels and this network "
        f"{need}: only grey weights (1 channel) are adapted to more channels, and weights of any count to grey. Start "
        f"from weights saved for {need} channels or 1, or OTHER({have}).")
