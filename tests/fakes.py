"""A teacher whose label is readable from the pixels, and synthesizers that record or aim: exact expectations."""
import torch
from torch import nn

from datafree.synthesizers import NoiseSynthesizer, Synthesizer
from datafree.synthesizers.base import Batch
from datafree.teachers import ClassifierInfo, Normalized, Teacher, freeze


class RedTeacher(nn.Module):
    """Class k is the image whose mean red value is nearest k / (K - 1); logits are minus the squared gap."""

    def __init__(self, num_classes: int = 4):
        super().__init__()
        self.num_classes = num_classes
        self.features = nn.Linear(1, 8)  # a penultimate layer for the audit: the last Linear reads its output
        self.head = nn.Linear(8, num_classes)
        with torch.no_grad():  # fixed weights: every RedTeacher is the same teacher (one sha256)
            self.features.weight.copy_(torch.linspace(-1, 1, 8).view(8, 1))
            self.features.bias.zero_()
            self.head.weight.copy_(torch.linspace(-1, 1, 8 * num_classes).view(num_classes, 8))
            self.head.bias.zero_()

    def forward(self, x):
        red = x[:, 0].mean((1, 2)).unsqueeze(1)
        self.head(torch.relu(self.features(red)))  # only so that the audit's feature hook sees an input
        centres = torch.linspace(0, 1, self.num_classes, device=x.device)
        return -((red - centres) ** 2) * 100


def red_teacher(num_classes: int = 4, size: int = 8, classes=None) -> Teacher:
    net = Normalized(RedTeacher(num_classes), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    info = ClassifierInfo(arch="RedTeacher", num_classes=num_classes, input_size=(3, size, size), mean=(0.0,) * 3,
                          std=(1.0,) * 3, classes=list(classes or [f"c{k}" for k in range(num_classes)]))
    return Teacher(freeze(net), info)


class AimingSynthesizer(Synthesizer):
    """Images whose red channel says the class it aims at (draw_targets); the other channels are noise."""

    aims_at_classes = True

    def __init__(self, batch_size: int = 16):
        self.batch_size = batch_size

    def synthesize(self) -> Batch:
        targets = self.draw_targets(self.batch_size)
        return Batch(images=self._images(targets), targets=targets)

    def _images(self, targets):
        images = torch.rand(targets.shape[0], *self.input_size, device=self.device)
        images[:, 0] = (targets.float() / (self.num_classes - 1)).view(-1, 1, 1)
        return images


class RecordingNoise(NoiseSynthesizer):
    """Uniform noise that keeps a copy of every batch it hands out."""

    def __init__(self, batch_size: int = 16):
        super().__init__(batch_size)
        self.made: list[torch.Tensor] = []

    def synthesize(self) -> Batch:
        batch = super().synthesize()
        self.made.append(batch.images.clone())
        return batch
