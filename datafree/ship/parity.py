"""Does a written file compute what the PyTorch student computes? The largest logit difference and the top-1
agreement over the check images (synthetic, and real ones when the user has them)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from datafree.errors import DatafreeError
from datafree.ship.runners import Runner


@dataclass
class Parity:
    max_logit_diff: float  # the largest |file - PyTorch| over every logit of every image
    agreement: float       # the fraction of images whose top-1 class is the same
    images: dict[str, int]  # check images per kind: {"synthetic": n, "real": n}

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Tolerance:
    max_logit_diff: float | None  # None: not checked (an int8 file's logits differ by design)
    min_agreement: float


def compare(reference: Runner, candidate: Runner, images: dict[str, torch.Tensor], batch: int = 256) -> Parity:
    """``candidate`` against ``reference`` on every image set of ``images`` (float, [0, 1]), in batches."""
    diff, same, total = 0.0, 0, 0
    for kind, tensor in images.items():
        for start in range(0, len(tensor), batch):
            part = tensor[start:start + batch]
            want, got = reference.logits(part), candidate.logits(part)
            if got.shape != want.shape:
                raise DatafreeError(f"{candidate.file or candidate.name} returns logits of shape {list(got.shape)} for "
                                    f"{len(part)} images, the student {list(want.shape)}: the file is not this student's.")
            diff = max(diff, float((got - want).abs().max()))
            same += int((got.argmax(1) == want.argmax(1)).sum())
            total += len(part)
    return Parity(max_logit_diff=diff, agreement=same / max(1, total),
                  images={kind: len(tensor) for kind, tensor in images.items()})


def require_within(parity: Parity, tolerance: Tolerance, what: str, keys: tuple[str, str]) -> None:
    """One line naming the difference when ``parity`` is outside ``tolerance`` (``keys``: the recipe keys to loosen)."""
    counted = " + ".join(f"{n} {kind}" for kind, n in parity.images.items())
    if parity.max_logit_diff != parity.max_logit_diff:  # NaN: the file computes nothing usable
        raise DatafreeError(f"{what} returns NaN logits on the check images ({counted}): it was not written.")
    if tolerance.max_logit_diff is not None and parity.max_logit_diff > tolerance.max_logit_diff:
        raise DatafreeError(f"{what} differs from the PyTorch student by up to {parity.max_logit_diff:.3g} in a logit "
                            f"(tolerance {tolerance.max_logit_diff:g}; top-1 agreement {100 * parity.agreement:.2f}% on "
                            f"{counted} images): it was not written; {keys[0]} sets the tolerance.")
    if parity.agreement < tolerance.min_agreement:
        raise DatafreeError(f"{what} agrees with the PyTorch student on {100 * parity.agreement:.2f}% of top-1 classes "
                            f"(at least {100 * tolerance.min_agreement:g}% required; largest logit difference "
                            f"{parity.max_logit_diff:.3g} on {counted} images): it was not written; {keys[1]} sets "
                            "the requirement.")
