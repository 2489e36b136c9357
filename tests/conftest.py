import pytest
import torch

from nets import calibrated_bn_net


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture
def bn_teacher():
    torch.manual_seed(1)
    return calibrated_bn_net()
