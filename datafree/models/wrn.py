"""Wide ResNets (Zagoruyko & Komodakis 2016), pre-activation blocks, depth = 6n + 4."""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from datafree.errors import DatafreeError
from datafree.registry import register_model


class WideBlock(nn.Module):
    def __init__(self, in_planes: int, out_planes: int, stride: int, dropout: float = 0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, 1, 1, bias=False)
        self.dropout = dropout
        self.equal_in_out = in_planes == out_planes and stride == 1
        self.shortcut = None if self.equal_in_out else nn.Conv2d(in_planes, out_planes, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = F.relu(self.bn1(x))
        out = self.conv1(pre)
        out = F.relu(self.bn2(out))
        if self.dropout > 0:
            out = F.dropout(out, p=self.dropout, training=self.training)
        out = self.conv2(out)
        # The projection shortcut reads the pre-activated input, as in the reference code.
        return out + (x if self.equal_in_out else self.shortcut(pre))


class WideResNet(nn.Module):
    def __init__(
        self,
        depth: int,
        widen_factor: int,
        num_classes: int = 10,
        dropout: float = 0.0,
        in_channels: int = 3,
    ):
        super().__init__()
        if (depth - 4) % 6 != 0 or depth < 10:
            raise DatafreeError(f"WideResNet depth must be 6n+4 (10, 16, 22, 28, 40, ...); got depth={depth}.")
        if widen_factor < 1:
            raise DatafreeError(f"WideResNet widen_factor must be >= 1; got {widen_factor}.")
        self.num_classes = num_classes
        self.in_channels = in_channels
        n = (depth - 4) // 6
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        self.block1 = self._make_group(widths[0], widths[1], n, 1, dropout)
        self.block2 = self._make_group(widths[1], widths[2], n, 2, dropout)
        self.block3 = self._make_group(widths[2], widths[3], n, 2, dropout)
        self.bn = nn.BatchNorm2d(widths[3])
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[3], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    @staticmethod
    def _make_group(in_planes: int, out_planes: int, n: int, stride: int, dropout: float) -> nn.Sequential:
        return nn.Sequential(
            *[WideBlock(in_planes if i == 0 else out_planes, out_planes, stride if i == 0 else 1, dropout) for i in range(n)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = F.relu(self.bn(out))
        return self.fc(torch.flatten(self.avgpool(out), 1))


@register_model()
def wrn16_1(num_classes: int = 10, dropout: float = 0.0, in_channels: int = 3) -> WideResNet:
    return WideResNet(16, 1, num_classes, dropout, in_channels)


@register_model()
def wrn16_2(num_classes: int = 10, dropout: float = 0.0, in_channels: int = 3) -> WideResNet:
    return WideResNet(16, 2, num_classes, dropout, in_channels)


@register_model()
def wrn40_1(num_classes: int = 10, dropout: float = 0.0, in_channels: int = 3) -> WideResNet:
    return WideResNet(40, 1, num_classes, dropout, in_channels)


@register_model()
def wrn40_2(num_classes: int = 10, dropout: float = 0.0, in_channels: int = 3) -> WideResNet:
    return WideResNet(40, 2, num_classes, dropout, in_channels)
