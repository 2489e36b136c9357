"""How many samples of each class a synthetic data set gets, and which drawn samples it keeps.

A sample's class is the teacher's label for it (the argmax of its stored logits), so the
histogram a user asks for is the one a reader of the set will find. Samples are kept in
the order they are drawn, while their class still has room.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

from datafree.errors import DatafreeError

BALANCED, AS_DRAWN = "balanced", "as_drawn"
# Above this many classes the answers to a synthesizer's aims (a classes x classes count) are not kept: 8 MB at 1,024.
MOST_CLASSES_ANSWERED = 1024


def class_targets(spec, n: int, classes: Sequence[str]) -> list[int] | None:
    """Samples wanted per class: ``balanced`` (n / classes, the first classes one more when it does not divide),
    ``as_drawn`` (None: keep whatever the synthesizer makes), a ``{class name or index: count}`` map or a list
    of counts per class; maps and lists must add up to ``n``, and classes left out of a map get none.
    """
    num_classes = len(classes)
    if isinstance(spec, str):
        if spec == BALANCED:
            return [n // num_classes + (1 if k < n % num_classes else 0) for k in range(num_classes)]
        if spec == AS_DRAWN:
            return None
        raise DatafreeError(f"class_counts={spec!r} is not a choice: give balanced, as_drawn, a map "
                            "{class: count, ...} or a list of one count per class.")
    if isinstance(spec, Mapping):
        counts = [0] * num_classes
        unknown, seen = [], set()
        for key, value in spec.items():
            index = _class_index(key, classes)
            if index is None:
                unknown.append(str(key))
                continue
            if index in seen:
                raise DatafreeError(f"class_counts names class {classes[index]!r} twice (by name and by index): give it once.")
            seen.add(index)
            counts[index] = _count(value, f"class_counts[{key}]")
        if unknown:
            raise DatafreeError(f"class_counts names unknown classes {unknown}: the teacher's classes are "
                                f"{list(classes)} (or their indices 0..{num_classes - 1}).")
    elif isinstance(spec, Sequence):
        if len(spec) != num_classes:
            raise DatafreeError(f"class_counts lists {len(spec)} counts but the teacher has {num_classes} classes: "
                                "give one count per class, or a map {class: count}.")
        counts = [_count(value, f"class_counts[{k}]") for k, value in enumerate(spec)]
    else:
        raise DatafreeError(f"class_counts must be balanced, as_drawn, a map or a list, got {type(spec).__name__}.")
    if sum(counts) != n:
        raise DatafreeError(f"class_counts add up to {sum(counts)} but n={n}: make them sum to n, or set n={sum(counts)}.")
    return counts


def _class_index(key, classes: Sequence[str]) -> int | None:
    if isinstance(key, str) and key in classes:
        return list(classes).index(key)
    text = str(key)
    if text.isdigit() and int(text) < len(classes):
        return int(text)
    return None


def _count(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise DatafreeError(f"{name} must be an int >= 0, got {value!r}.")
    return value


class Quota:
    """Room left per class (or in all, for ``as_drawn``) and the choice of drawn samples to keep."""

    def __init__(self, targets: list[int] | None, n: int, num_classes: int, counts: Sequence[int] | None = None):
        self.targets = None if targets is None else torch.tensor(targets, dtype=torch.int64)
        self.n, self.num_classes = int(n), int(num_classes)
        self.counts = torch.zeros(num_classes, dtype=torch.int64) if counts is None else torch.tensor(list(counts), dtype=torch.int64)
        # What this process has seen drawn (kept or not), for the projection in ``out_of_reach``: the labels, and for
        # draws made for a class (a synthesizer that aims) how often each aim was answered with each label.
        self.seen = torch.zeros(num_classes, dtype=torch.int64)
        self.seen_draws = 0
        self.aimed = torch.zeros(num_classes, dtype=torch.int64)
        self.answered: torch.Tensor | None = None  # [aimed at, labelled], once a draw with aims was seen

    @property
    def kept(self) -> int:
        return int(self.counts.sum())

    @property
    def done(self) -> bool:
        return self.kept >= self.n

    def accept(self, labels: torch.Tensor, aims: torch.Tensor | None = None) -> torch.Tensor:
        """Which of ``labels`` (a drawn batch, CPU int64; -1 for a sample without a label) to keep, in order;
        the counts move on. ``aims``: the class each sample was made for, where the synthesizer aims."""
        valid = labels >= 0
        self.seen += torch.bincount(labels[valid], minlength=self.num_classes)
        self.seen_draws += len(labels)
        if aims is not None and self.num_classes <= MOST_CLASSES_ANSWERED:
            k = self.num_classes
            self.aimed += torch.bincount(aims, minlength=k)
            pairs = torch.bincount(aims[valid] * k + labels[valid], minlength=k * k).view(k, k)
            self.answered = pairs if self.answered is None else self.answered + pairs
        if self.targets is None:
            keep = valid & (valid.cumsum(0) <= self.n - self.kept)
        else:
            one_hot = F.one_hot(labels.clamp_min(0), self.num_classes) * valid.unsqueeze(1)
            rank_in_class = (one_hot.cumsum(0) * one_hot).sum(1) - 1
            keep = valid & (rank_in_class < (self.targets - self.counts)[labels.clamp_min(0)])
        self.counts += torch.bincount(labels[keep], minlength=self.num_classes)
        return keep

    def weights(self) -> torch.Tensor | None:
        """Room left per class, for a synthesizer that aims at classes; None when any class will do."""
        if self.targets is None:
            return None
        return (self.targets - self.counts).clamp_min(0).float()

    def out_of_reach(self, draws_left: int, aiming: bool = False, at_least: int = 0) -> dict[int, int]:
        """Short classes that ``draws_left`` more draws would not fill even at a rate well above the one seen so far
        (a count plus three standard deviations plus five, per draw): index -> the draws filling it would take at
        that generous rate. Empty until this process has seen at least ``n`` draws, and ``at_least``.

        Without aims a class's rate is the share of draws labelled with it. A synthesizer that aims at the quota's
        classes (``aiming``) draws more of a class as the others fill, up to all of its draws, and only for classes
        still short: a class's rate can rise to the most any short class's aims were answered with it (its own aims or
        another's), so that is the rate taken, and none is judged before every short class has been aimed at (nor
        with more than :data:`MOST_CLASSES_ANSWERED` classes, whose answers are not counted).
        """
        if (self.targets is None or self.seen_draws < max(self.n, at_least)
                or (aiming and self.answered is None)):
            return {}
        short = self.shortfall()
        needed = {}
        for k, (have, want) in short.items():
            if aiming:
                rate = max(_generous(self.answered[j, k], self.aimed[j]) for j in short)
            else:
                rate = _generous(self.seen[k], self.seen_draws)
            draws = int((want - have) / rate) + 1
            if draws > draws_left:
                needed[k] = draws
        return needed

    def shortfall(self) -> dict[int, tuple[int, int]]:
        """Classes still short: index -> (kept, wanted)."""
        if self.targets is None:
            return {}
        return {k: (int(self.counts[k]), int(self.targets[k])) for k in range(self.num_classes)
                if self.counts[k] < self.targets[k]}


def _generous(count, draws) -> float:
    """A rate well above ``count`` in ``draws`` (the count plus three standard deviations plus five, per draw; 1
    without draws): a class is judged out of reach only when even this rate cannot fill it."""
    count, draws = float(count), float(draws)
    return 1.0 if draws <= 0 else min(1.0, (count + 3 * count ** 0.5 + 5) / draws)
