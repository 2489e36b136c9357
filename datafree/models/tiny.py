"""Very small CNNs so that CPU demos and tests finish in seconds."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from datafree.registry import register_model


class _ChannelsLastMaxPool(torch.autograd.Function):
    """2x2 max-pooling of an NCHW tensor through PyTorch's channels-last CPU kernel, which is several times faster
    than its NCHW one (on the demo's shapes as slow as the convolution before it). The backward is the NCHW
    kernel's, from the same indices: outputs and gradients are bit for bit those of ``F.max_pool2d``."""

    @staticmethod
    def forward(ctx, x):
        out, indices = F.max_pool2d(x.contiguous(memory_format=torch.channels_last), 2, return_indices=True)
        indices = indices.contiguous()
        ctx.save_for_backward(x, indices)
        return out.contiguous()

    @staticmethod
    def backward(ctx, grad):
        x, indices = ctx.saved_tensors
        return torch.ops.aten.max_pool2d_with_indices_backward(grad.contiguous(), x, [2, 2], [2, 2], [0, 0], [1, 1],
                                                                False, indices)


class MaxPool2x2(nn.MaxPool2d):
    """``nn.MaxPool2d(2)``, faster on the CPU for NCHW inputs (:class:`_ChannelsLastMaxPool`)."""

    def __init__(self):
        super().__init__(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting() or torch.jit.is_tracing() or x.device.type != "cpu" or x.dim() != 4 or not x.is_contiguous():
            return F.max_pool2d(x, 2)
        return self._channels_last(x)

    @torch.jit.unused
    def _channels_last(self, x: torch.Tensor) -> torch.Tensor:
        return _ChannelsLastMaxPool.apply(x)


def _block(inp: int, oup: int, bn: bool = True) -> list[nn.Module]:
    if bn:
        return [nn.Conv2d(inp, oup, 3, padding=1, bias=False), nn.BatchNorm2d(oup), nn.ReLU(inplace=True)]
    return [nn.Conv2d(inp, oup, 3, padding=1), nn.ReLU(inplace=True)]


class SmallCNN(nn.Module):
    """Conv blocks (2x max-pool after all but the last), global average pool, linear.

    Global pooling instead of a flatten makes any input of at least 2**pools pixels work.
    """

    # On the CPU the demo's teacher's training step ran 1.19-1.23x faster channels_last over four passes, and the
    # whole default demo 1.01-1.30x, 1.10x over four passes, alone on the machine (beside a second process no
    # faster; benchmarks/cpu_layout.py --demo, docs/benchmarks.md "The demo's networks"). network_layout reads this.
    channels_last_on_cpu = True

    def __init__(self, widths: list[int], num_classes: int = 10, in_channels: int = 3, bn: bool = True):
        super().__init__()
        self.num_classes = num_classes
        self.in_channels = in_channels
        layers: list[nn.Module] = []
        channels = in_channels
        for i, width in enumerate(widths):
            layers += _block(channels, width, bn)
            if i < len(widths) - 1:
                layers.append(MaxPool2x2())
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
