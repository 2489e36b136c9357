"""Very small CNNs so that CPU demos and tests finish in seconds."""
from __future__ import annotations

import torch
from torch import nn

from datafree.registry import register_model


def _block(inp: int, oup: int, bn: bool = True) -> list[nn.Module]:
    if bn:
        return [nn.Conv2d(inp, oup, 3, padding=1, bias=False), nn.BatchNorm2d(oup), nn.ReLU(inplace=True)]
    return [nn.Conv2d(inp, oup, 3, padding=1), nn.ReLU(inplace=True)]


class SmallCNN(nn.Module):
    """Conv blocks (2x max-pool after all but the last), global average pool, linear.

    Global pooling instead of a flatten makes any input of at least 2**pools pixels work.
    """

    def __init__(self, widths: list[int], num_classes: int = 10, in_channels: int = 3, bn: bool = True):
        super().__init__()
        self.num_classes = num_classes
        self.in_channels = in_channels
        layers: list[nn.Module] = []
        channels = in_channels
        for i, width in enumerate(widths):
            layers += _block(channels, width, bn)
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            channels = width
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


@register_model()
def tinycnn(num_classes: int = 10, in_channels: int = 3) -> SmallCNN:
    return SmallCNN([32, 64, 128], num_classes, in_channels)


@register_model()
def microcnn(num_classes: int = 10, in_channels: int = 3) -> SmallCNN:
    return SmallCNN([16, 32], num_classes, in_channels)


@register_model()
def nobn_cnn(num_classes: int = 10, in_channels: int = 3) -> SmallCNN:
    # Deliberately BN-free: DeepInversion has no batch statistics to match and must refuse it.
    return SmallCNN([16, 32], num_classes, in_channels, bn=False)
