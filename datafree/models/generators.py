"""DCGAN-style image generators used by the adversarial and generative synthesizers."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from datafree.errors import DatafreeError
from datafree.registry import register_model

# Keep the first feature map small: a large one makes the first Linear huge (40M weights at 224 px).
_MAX_INIT_SIZE = 8


# A size doubling cannot reach is made at the nearest one it can (a first map of at most this many pixels a side)
# and resized: Inception's 299 px is made at 288, scans of 45x30 at 44x32.
_MAX_FIRST_MAP = 16


def _sides(image_size) -> tuple[int, int]:
    height, width = (image_size, image_size) if isinstance(image_size, int) else tuple(int(v) for v in image_size)
    if height < 1 or width < 1:
        raise DatafreeError(f"generator image_size={image_size} must be positive: e.g. 32, or [height, width].")
    return height, width


def reachable_size(image_size) -> tuple[int, int]:
    """The (height, width) the generator's doublings make for ``image_size``: itself when each side is a multiple
    of 4 and at least 8, else the nearest size whose sides are ``a * 2**k`` (the same k >= 2, ``a`` at most
    ``_MAX_FIRST_MAP``), at least 8 each; the generator resizes that to ``image_size``."""
    height, width = _sides(image_size)
    if all(side % 4 == 0 and side >= 8 for side in (height, width)):
        return height, width
    k = 2
    while max(round(side / 2**k) for side in (height, width)) > _MAX_FIRST_MAP:
        k += 1
    return tuple(max(8, max(1, round(side / 2**k)) * 2**k) for side in (height, width))


def _plan_upsampling(image_size) -> tuple[tuple[int, int], int]:
    """((init_h, init_w), n_blocks) with each side == init * 2**n_blocks, n_blocks >= 2.

    ``image_size`` is one side (square) or (height, width), each a multiple of 4 and at least 8
    (:func:`reachable_size`): both sides double the same number of times.
    """
    height, width = _sides(image_size)
    if any(side % 4 != 0 or side < 8 for side in (height, width)):
        raise DatafreeError(f"generator sides must be multiples of 4 and at least 8, got {image_size}: make it at "
                            f"{reachable_size(image_size)} and resize (reachable_size).")
    init, blocks = (height // 4, width // 4), 2
    while max(init) > _MAX_INIT_SIZE and init[0] % 2 == 0 and init[1] % 2 == 0:
        init, blocks = (init[0] // 2, init[1] // 2), blocks + 1
    return init, blocks


class Generator(nn.Module):
    """z (optionally with a class) -> image in [0, 1] of shape (N, channels, height, width).

    ``image_size`` is one side (square images) or ``(height, width)``; a size doubling cannot reach is made at
    the nearest one it can (:func:`reachable_size`, ``made_size``) and resized to it (bilinear, which keeps [0, 1]).

    Linear -> (2*base_width, s, s) -> BN, then [Upsample x2 -> conv3x3 -> BN -> LeakyReLU(0.2)] until
    image_size, then conv3x3 -> [BN without affine] -> sigmoid. The sigmoid matches the [0, 1] pixel
    range that the teacher's normalisation expects before it is applied. The output BN (``output_bn``,
    on by default, as DFAD's generator has) keeps the pre-sigmoid values standardised over the batch:
    an adversarial generator otherwise drives them to saturation and collapses to a few flat patterns.

    When ``conditional``, a learned class embedding (latent_dim wide) is concatenated to z, so the
    class can never be cancelled out by a small z the way a multiplicative embedding can.
    """

    def __init__(
        self,
        latent_dim: int = 100,
        image_size: int | tuple[int, int] = 32,
        channels: int = 3,
        base_width: int = 64,
        conditional: bool = False,
        num_classes: int = 10,
        output_bn: bool = True,
    ):
        super().__init__()
        if not isinstance(latent_dim, int) or latent_dim <= 0:
            raise DatafreeError(f"generator latent_dim must be a positive integer; got latent_dim={latent_dim!r}.")
        if channels <= 0:
            raise DatafreeError(f"generator channels must be >= 1 (3 for RGB, 1 for grey); got channels={channels}.")
        if base_width <= 0:
            raise DatafreeError(f"generator base_width must be >= 1 (64 is usual); got base_width={base_width}.")
        if conditional and num_classes < 1:
            raise DatafreeError(
                f"a conditional generator needs num_classes >= 1; got num_classes={num_classes}."
            )
        self.latent_dim = latent_dim
        self.image_size = image_size
        self.channels = channels
        self.base_width = base_width
        self.conditional = bool(conditional)
        self.num_classes = num_classes
        self.made_size = reachable_size(image_size)
        self._resize_to = None if self.made_size == _sides(image_size) else _sides(image_size)
        self.init_size, n_blocks = _plan_upsampling(self.made_size)

        wide = base_width * 2
        self.embed = nn.Embedding(num_classes, latent_dim) if self.conditional else None
        in_features = latent_dim * (2 if self.conditional else 1)
        self.l1 = nn.Linear(in_features, wide * self.init_size[0] * self.init_size[1])
        self.bn0 = nn.BatchNorm2d(wide)
        blocks: list[nn.Module] = []
        for i in range(n_blocks):
            out = base_width if i == n_blocks - 1 else wide
            blocks += [
                nn.Upsample(scale_factor=2),
                nn.Conv2d(wide, out, 3, 1, 1, bias=False),
                nn.BatchNorm2d(out),
                nn.LeakyReLU(0.2, inplace=True),
            ]
        self.blocks = nn.Sequential(*blocks)
        head: list[nn.Module] = [nn.Conv2d(base_width, channels, 3, 1, 1)]
        if output_bn:
            head.append(nn.BatchNorm2d(channels, affine=False))
        self.head = nn.Sequential(*head, nn.Sigmoid())

    def sample_latent(self, n: int, device=None, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(n, self.latent_dim, device=device, generator=generator)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise DatafreeError(
                f"generator expects z of shape (N, {self.latent_dim}); got {tuple(z.shape)}. "
                f"Use sample_latent(n) or match latent_dim."
            )
        if self.conditional:
            if labels is None:
                raise DatafreeError("this generator is conditional: pass labels, e.g. generator(z, labels).")
            z = torch.cat([z, self.embed(labels.to(z.device).long())], dim=1)
        # Labels passed to an unconditional generator are ignored so callers can pass them uniformly.
        out = self.l1(z).view(z.shape[0], -1, *self.init_size)
        images = self.head(self.blocks(self.bn0(out)))
        if self._resize_to is not None:
            images = F.interpolate(images, size=self._resize_to, mode="bilinear", align_corners=False)
        return images

    def reset_first_layer(self) -> None:
        """Fresh input mapping, trained decoder kept (generator life-cycle strategies use this)."""
        self.l1.reset_parameters()
        if self.embed is not None:
            self.embed.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-initialise every layer, BN running statistics included."""
        for module in self.modules():
            if module is not self and hasattr(module, "reset_parameters"):
                module.reset_parameters()


@register_model()
def dcgan_generator(
    num_classes: int = 10,
    latent_dim: int = 100,
    image_size: int | tuple[int, int] = 32,
    channels: int = 3,
    base_width: int = 64,
    conditional: bool = False,
    output_bn: bool = True,
) -> Generator:
    return Generator(latent_dim, image_size, channels, base_width, conditional, num_classes, output_bn)
