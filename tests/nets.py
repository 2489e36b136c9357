"""Small networks shared by the tests."""
import torch
from torch import nn


class TinyBNNet(nn.Module):
    """A 2-conv BN network: small enough for many optimisation steps in a test."""

    def __init__(self, num_classes: int = 4, channels: int = 3):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1, stride=2), nn.BatchNorm2d(16), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.head = nn.Linear(16, num_classes)

    def forward(self, x):
        return self.head(self.features(x))


def calibrated_bn_net(num_classes: int = 4, size: int = 8) -> nn.Module:
    """A TinyBNNet whose BN running statistics come from structured (non-noise) inputs."""
    net = TinyBNNet(num_classes)
    net.train()
    with torch.no_grad():
        for _ in range(20):
            base = torch.rand(32, 3, 1, 1) * 0.5 + 0.25
            ramp = torch.linspace(0, 1, size).view(1, 1, 1, size)
            net(base * ramp + 0.1)
    return net.eval()


class GroupNormNet(nn.Module):
    """A teacher without BatchNorm (GroupNorm and LayerNorm only): DeepInversion has nothing to match."""

    def __init__(self, num_classes: int = 4, channels: int = 3):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, 8, 3, padding=1), nn.GroupNorm(2, 8), nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1, stride=2), nn.GroupNorm(4, 16), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.LayerNorm(16),
        )
        self.head = nn.Linear(16, num_classes)

    def forward(self, x):
        return self.head(self.features(x))


class GreyWideNet(nn.Module):
    """1-channel, 12x20 inputs only: its flat head fixes the input size, as many user models do."""

    def __init__(self, num_classes: int = 3):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Linear(6 * 6 * 10, num_classes)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


class TrainingPairNet(TinyBNNet):
    """Returns (logits, features) in training mode and the logits alone in evaluation mode, as many research
    networks do: fine as a frozen teacher, not as a network datafree trains."""

    def forward(self, x):
        features = self.features(x)
        logits = self.head(features)
        return (logits, features) if self.training else logits


class SoftmaxNet(TinyBNNet):
    """Ends in a softmax, as many networks ported from other frameworks do: probabilities, not logits."""

    def forward(self, x):
        return super().forward(x).softmax(1)


class ClassifierOutput(dict):
    """What a Hugging Face transformers classifier returns (its ModelOutput): a dict whose keys are attributes too."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class LikeTransformers(TinyBNNet):
    """A network as transformers' AutoModelForImageClassification.from_pretrained(folder) gives one, without
    transformers: its forward returns an output object holding ``logits`` (in both modes), its ``config`` names the
    folder it came from (which may hold a preprocessor_config.json) and its classes (``id2label``)."""

    def __init__(self, num_classes: int = 4, folder: str = "", labels: list | None = None):
        super().__init__(num_classes)
        names = labels or [f"LABEL_{k}" for k in range(num_classes)]
        self.config = type("Config", (), {"_name_or_path": folder, "num_channels": 3, "num_labels": num_classes,
                                          "id2label": {k: name for k, name in enumerate(names)}})()

    def forward(self, pixel_values):
        features = self.features(pixel_values)
        return ClassifierOutput(loss=None, logits=self.head(features), hidden_states=None)


class ReadsBackATensor(TinyBNNet):
    """Its constructor reads a number back from a tensor, which PyTorch's meta device cannot give (as
    transformers' from_pretrained, loading weights, and torchvision's RegNet do)."""

    def __init__(self, num_classes: int = 4):
        super().__init__(num_classes)
        self.width = int(torch.ones(16).sum().item())
