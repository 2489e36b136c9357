"""datafree.ship.metrics: each measure on inputs whose answer is known."""
import pytest
import torch
from torch import nn

from datafree.ship.metrics import (calibration, linear_cka, multiply_accumulates, parameter_count,
                                   peak_activation_bytes, per_class_accuracy)


def _logits_with_confidence(confidence: float, n: int, classes: int = 4) -> torch.Tensor:
    """Logits whose softmax gives class 0 probability ``confidence`` and shares the rest equally."""
    rest = (1 - confidence) / (classes - 1)
    probs = torch.full((n, classes), rest)
    probs[:, 0] = confidence
    return probs.log()


def test_ece_is_zero_for_a_calibrated_model_and_the_gap_for_an_overconfident_one():
    labels = torch.tensor([0] * 8 + [1] * 2)  # 80% of class 0
    calibrated = calibration(_logits_with_confidence(0.8, 10), labels)
    assert calibrated.ece == pytest.approx(0.0, abs=1e-6)
    overconfident = calibration(_logits_with_confidence(0.99, 10), labels)
    assert overconfident.ece == pytest.approx(0.19, abs=1e-5)
    assert sum(b["count"] for b in overconfident.bins) == 10 and len(overconfident.bins) == 15
    full = [b for b in overconfident.bins if b["count"]]
    assert len(full) == 1 and full[0]["accuracy"] == pytest.approx(0.8) and full[0]["lower"] < 0.99 <= full[0]["upper"]


def test_ece_stays_in_zero_one_for_any_logits():
    generator = torch.Generator().manual_seed(0)
    for scale in (0.1, 1.0, 100.0):
        logits = torch.randn(500, 10, generator=generator) * scale
        labels = torch.randint(0, 10, (500,), generator=generator)
        assert 0.0 <= calibration(logits, labels).ece <= 1.0


def test_per_class_accuracy_counts_within_each_true_class():
    labels = torch.tensor([0, 0, 1, 1, 1, 3])
    predicted = torch.tensor([0, 1, 1, 1, 0, 3])
    assert per_class_accuracy(predicted, labels, 4) == [0.5, pytest.approx(2 / 3), None, 1.0]


def test_linear_cka_is_one_for_rotated_and_scaled_features_and_low_for_unrelated_ones():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(400, 16, generator=generator)
    rotation, _ = torch.linalg.qr(torch.randn(16, 16, generator=generator))
    assert linear_cka(x, 3.0 * x @ rotation + 1.0) == pytest.approx(1.0, abs=1e-9)
    assert linear_cka(x, torch.randn(400, 8, generator=generator)) < 0.1
    assert linear_cka(x, x[:, :4]) == pytest.approx(linear_cka(x[:, :4], x), abs=1e-12)  # symmetric, any widths


def test_macs_and_parameters_of_a_known_network():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.Flatten(), nn.Linear(8 * 16 * 16, 10))
    assert parameter_count(net) == 3 * 8 * 9 + 8 * 256 * 10 + 10
    assert multiply_accumulates(net, (3, 16, 16)) == 16 * 16 * 8 * 3 * 9 + 8 * 256 * 10


def test_peak_activation_bytes_counts_what_lives_at_once():
    # Two 1 MB activations alive together (the second is computed from the first), the input not counted.
    net = nn.Sequential(nn.Conv2d(1, 1, 1), nn.Conv2d(1, 1, 1))
    images = torch.rand(1, 1, 512, 512)
    peak = peak_activation_bytes(net, images)
    one = 512 * 512 * 4
    assert 2 * one <= peak < 3 * one
