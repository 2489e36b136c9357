"""Images the user may use (a proxy set), drawn at random and labelled by the teacher: not data-free.

For teachers no data-free method here serves: ConvNeXt, ViT, Swin (LayerNorm), GroupNorm networks and TorchScript
archives keep no BatchNorm statistics, and the methods that need none (DFAD, DAFL, the fast synthesizer and
DeepInversion without their prior) ended near chance on the CPU demo, PSAQ-ViT's patch-similarity prior for a ViT
lower still (docs/benchmarks.md, "A teacher without BatchNorm", "A prior for vision transformers"). Any images the
student's maker may hold (a public set, unlabelled pictures of the same kind of scene) stand in for the private data:
the student learns the teacher's answers on them, as in knowledge distillation with out-of-domain or proxy data
(e.g. DFND, Chen et al. 2021, who select such images from the wild: ``per_class`` is that selection step, the
images are otherwise used as given). Where such images
exist they beat synthesis for any teacher: on the demo 500 of them took a BatchNorm teacher's student to 0.84 x the
teacher, its BatchNorm prior to 0.40 x. Labels are never read: a folder of class folders, a flat folder or a
``.tar.gz`` of either.

The set is read once at the teacher's input size and channels, kept on the device as uint8 (airbench's habit: a
quarter of float32's memory, converted per batch), and every round draws ``batch_size`` of them with the device's
random stream (which the run's state carries: a resumed run draws the same images).
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F

from datafree.data.folders import TAR_SUFFIXES, load_image_folder, load_tarball
from datafree.errors import DatafreeError
from datafree.synthesizers.base import Batch, Synthesizer
from datafree.utils.dist import is_main_process

log = logging.getLogger("datafree")


class ImagesSynthesizer(Synthesizer):
    """Each round, ``batch_size`` images drawn at random from ``path`` (the student step asks the teacher for their
    labels); :meth:`sample` draws more of them for the student's steps."""

    def __init__(self, path: str | None = None, batch_size: int = 256, per_class: int | None = None):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise DatafreeError(f"synthesizer.batch_size must be an int >= 1, got {batch_size!r}.")
        if per_class is not None and (isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1):
            raise DatafreeError(f"synthesizer.per_class must be null (every image) or an int >= 1, got {per_class!r}.")
        self.per_class = per_class
        if not path:
            raise DatafreeError("synthesizer=images needs the images to draw from: set synthesizer.path=DIR (a folder "
                                "of images, with or without class folders; labels are not read) or a .tar.gz of one.")
        self.path, self.batch_size = check_path(Path(str(path)).expanduser()), int(batch_size)
        self.images: torch.Tensor | None = None

    def validate(self) -> None:
        channels, height, width = self.input_size
        self.images = read_images(self.path, (height, width), channels).to(self.device)
        read = len(self.images)
        if self.per_class is not None:
            self.images = self.images[surest_per_class(self.teacher, self.images, self.num_classes, self.per_class)]
        if is_main_process():
            kept = "" if self.per_class is None else (f", {len(self.images):,} kept: for each class the {self.per_class} "
                                                      "the teacher is surest of (synthesizer.per_class)")
            log.info(f"synthesizer: {read:,} images from {self.path} at {height}x{width}{kept}, {channels} channel(s), "
                     f"{self.images.numel() / 2**20:.0f} MiB on {self.device} as uint8; the teacher labels them (not "
                     "data-free: these images stand in for the data)")

    @torch.no_grad()
    def synthesize(self) -> Batch:
        return Batch(images=self.sample(self.batch_size))

    def sample(self, n: int) -> torch.Tensor:
        index = torch.randint(len(self.images), (n,), device=self.device)
        return self.images[index].float().div_(255)


@torch.no_grad()
def surest_per_class(teacher: torch.nn.Module, images: torch.Tensor, num_classes: int, per_class: int,
                     chunk: int = 512) -> torch.Tensor:
    """Indices (sorted, each once) of the ``per_class`` images the teacher gives each class the highest probability,
    as DFND (Chen et al. 2021) selects images from the wild: confident and balanced over the classes, however the
    images themselves fall. An image may be among the surest of two classes; it is kept once."""
    probabilities = torch.cat([teacher(images[i:i + chunk].float().div_(255)).float().softmax(1)
                               for i in range(0, len(images), chunk)])
    top = probabilities.topk(min(per_class, len(images)), dim=0).indices  # (per_class, classes)
    return top[:, :num_classes].flatten().unique()


def check_path(path: Path) -> Path:
    """``path`` if it can hold images (a folder, or an archive); one line saying what to give otherwise. Checked
    when the recipe is read, before a teacher is loaded or trained; the images are read once the teacher's size is
    known."""
    if not path.exists():
        raise DatafreeError(f"synthesizer.path {path} does not exist: give a folder of images (or a .tar.gz of one).")
    if path.is_file() and not path.name.lower().endswith(TAR_SUFFIXES):
        raise DatafreeError(f"synthesizer.path {path} is a file but not an archive ({', '.join(TAR_SUFFIXES)}): "
                            "give a folder of images or a .tar.gz of one.")
    return path


def read_images(path: Path, size: tuple[int, int], channels: int) -> torch.Tensor:
    """Every image under ``path`` (a folder at any depth, or an archive) as uint8 N x ``channels`` x H x W: resized
    to a square of the larger side, then to ``size`` where that is not square. The whole set is held in memory
    (a subset folder bounds it)."""
    read = load_tarball if check_path(path).is_file() else load_image_folder
    images = read(path, max(size), channels=channels, labelled=False).images
    if tuple(images.shape[2:]) != tuple(size):
        images = F.interpolate(images.float(), size=size, mode="bilinear", antialias=True, align_corners=False)
        images = images.round().clamp(0, 255).to(torch.uint8)
    return images
