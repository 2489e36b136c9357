"""Synthetic samples as a data set stores them: uint8 pixels, float16 teacher logits, labels, indices."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from datafree.errors import DatafreeError


@dataclass
class Samples:
    """``images`` uint8 N x C x H x W, ``logits`` float16 N x K (the teacher's, on exactly these pixels),
    ``labels`` int64 N (the teacher's class), ``indices`` int64 N (position in the data set), all on one device.
    """

    images: torch.Tensor
    logits: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def check(self, what: str) -> "Samples":
        """Raise a DatafreeError naming ``what`` when the tensors do not form a set of samples."""
        images, logits, labels, indices = self.images, self.logits, self.labels, self.indices
        problems = []
        if not all(isinstance(t, torch.Tensor) for t in (images, logits, labels, indices)):
            problems.append("images, logits, labels and indices must all be tensors")
        else:
            if images.dtype != torch.uint8 or images.dim() != 4:
                problems.append(f"images are {images.dtype} of shape {tuple(images.shape)}, not uint8 N x C x H x W")
            if logits.dtype != torch.float16 or logits.dim() != 2:
                problems.append(f"logits are {logits.dtype} of shape {tuple(logits.shape)}, not float16 N x classes")
            for name, t in (("labels", labels), ("indices", indices)):
                if t.dtype != torch.int64 or t.dim() != 1:
                    problems.append(f"{name} are {t.dtype} of shape {tuple(t.shape)}, not int64 N")
            if not problems and len({images.shape[0], logits.shape[0], labels.shape[0], indices.shape[0]}) != 1:
                problems.append(f"the counts differ: {images.shape[0]} images, {logits.shape[0]} logits, "
                                f"{labels.shape[0]} labels, {indices.shape[0]} indices")
        if problems:
            raise DatafreeError(f"{what} does not hold synthetic samples ({'; '.join(problems)}): it was not written by "
                                "datafree synthesize, or it was altered; write it again with the same command.")
        return self

    def slice(self, start: int, stop: int | None = None) -> "Samples":
        return Samples(self.images[start:stop], self.logits[start:stop], self.labels[start:stop], self.indices[start:stop])

    def select(self, mask: torch.Tensor) -> "Samples":
        return Samples(self.images[mask], self.logits[mask], self.labels[mask], self.indices[mask])

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Samples":
        return Samples(*(t.to(device, non_blocking=non_blocking) for t in (self.images, self.logits, self.labels, self.indices)))

    def as_dict(self) -> dict[str, torch.Tensor]:
        return {"images": self.images, "logits": self.logits, "labels": self.labels, "indices": self.indices}

    @classmethod
    def empty(cls, image_shape: tuple[int, int, int], num_classes: int) -> "Samples":
        return cls(torch.empty(0, *image_shape, dtype=torch.uint8), torch.empty(0, num_classes, dtype=torch.float16),
                   torch.empty(0, dtype=torch.int64), torch.empty(0, dtype=torch.int64))

    @classmethod
    def cat(cls, parts: list["Samples"]) -> "Samples":
        if len(parts) == 1:
            return parts[0]
        return cls(*(torch.cat([getattr(p, name) for p in parts]) for name in ("images", "logits", "labels", "indices")))
