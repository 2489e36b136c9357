"""datafree.ship.corruptions: every corruption keeps images valid, grows with its severity and repeats."""
import pytest
import torch

from datafree.ship.corruptions import LEVELS, SEVERITIES, corrupt


def _images(channels: int = 3) -> torch.Tensor:
    """Smooth images with edges (blur must have something to blur), in [0, 1]."""
    ramp = torch.linspace(0.2, 0.8, 16)
    base = ramp.view(1, 1, 1, 16) * ramp.view(1, 1, 16, 1)
    images = base.repeat(4, channels, 1, 1)
    images[:, :, 4:12, 4:12] = 0.9
    return images


@pytest.mark.parametrize("name", list(LEVELS))
def test_each_corruption_keeps_the_range_and_grows_with_severity(name):
    images = _images()
    changes = []
    for severity in SEVERITIES:
        out = corrupt(images, name, severity, torch.Generator().manual_seed(0))
        assert out.shape == images.shape and out.dtype == torch.float32
        assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
        changes.append(float((out - images).abs().mean()))
    assert 0 < changes[0] < changes[1] < changes[2], changes


@pytest.mark.parametrize("channels", [1, 4])
@pytest.mark.parametrize("name", list(LEVELS))
def test_grey_and_rgba_images_are_corrupted_in_their_own_channels(name, channels):
    images = _images(channels)
    out = corrupt(images, name, 3, torch.Generator().manual_seed(0))
    assert out.shape == images.shape and float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_noise_repeats_with_the_seed():
    images = _images()
    first = corrupt(images, "gaussian_noise", 5, torch.Generator().manual_seed(3))
    assert torch.equal(first, corrupt(images, "gaussian_noise", 5, torch.Generator().manual_seed(3)))
    assert not torch.equal(first, corrupt(images, "gaussian_noise", 5, torch.Generator().manual_seed(4)))
