"""Relation-based knowledge: how the samples of a batch stand to one another, not what each one is.

Both networks embed the same batch; the student matches the teacher's *relations*
between samples, so the two embeddings may differ in width.

* RKD (Park et al., CVPR 2019): pairwise distances, each divided by the batch's mean
  distance (:func:`rkd_distance`), and the angles that every triple forms
  (:func:`rkd_angle`), both compared with the Huber loss as in the authors' code.
* Similarity-preserving KD (Tung & Mori, ICCV 2019): the batch's row-normalised Gram
  matrix of a layer's flattened activations (:func:`similarity_preserving`).

Everything here is batch means with fixed shapes and no host reads (no boolean
indexing), so the terms can run inside a captured CUDA graph.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def pairwise_distances(embedding: torch.Tensor) -> torch.Tensor:
    """(N, N) Euclidean distances between the rows of ``embedding`` (N, D), exactly 0 on the diagonal.

    The square root is taken of squared distances clamped at 1e-12, so that the gradient
    stays finite where two rows coincide.
    """
    x = embedding.float().flatten(1)
    squared = x.pow(2).sum(1)
    gram = x @ x.t()
    distances = (squared.unsqueeze(0) + squared.unsqueeze(1) - 2 * gram).clamp_min(1e-12).sqrt()
    return distances * (1 - torch.eye(x.shape[0], device=x.device, dtype=x.dtype))


def _normalised_distances(embedding: torch.Tensor) -> torch.Tensor:
    distances = pairwise_distances(embedding)
    n = distances.shape[0]
    mean = distances.sum() / max(1, n * (n - 1))  # over the pairs i != j; the diagonal is 0
    return distances / mean.clamp_min(1e-12)


def rkd_distance(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """RKD-D: Huber loss between the two batches' distance matrices, each divided by its mean pair distance.

    The mean runs over all N x N entries (the diagonal, 0 on both sides, included), as in the
    authors' code. Needs a batch of at least 2.
    """
    with torch.no_grad():
        target = _normalised_distances(teacher)
    return F.smooth_l1_loss(_normalised_distances(student), target)


# Pairs closer than this fraction of the batch's mean pair distance count as coincident in RKD-A (see _angles).
ANGLE_FLOOR = 1e-2


def _angles(embedding: torch.Tensor) -> torch.Tensor:
    """(N, N, N) cosines: entry (j, i, k) is the cosine of the angle at sample j between i and k.

    Departure from the authors' code (which normalises with a fixed eps of 1e-12): each difference
    is divided by its length floored at ``ANGLE_FLOOR`` x the batch's mean pair distance. The
    direction between two nearly coincident samples is undefined, and its gradient grows as one
    over their distance (a generator can make near-duplicates, and bf16 features differ by rounding
    alone by about 0.4% of their size). With the plain normalisation a ResNet-18 on the fast recipe
    went non-finite within 500 steps at the paper's weight (docs/benchmarks.md); this unbounded
    gradient is the likely cause, not a proven one. Pairs at least 1% of
    the mean distance apart are unaffected; closer ones fade towards "no angle".
    """
    x = embedding.float().flatten(1)
    differences = x.unsqueeze(0) - x.unsqueeze(1)  # [j, i] = the vector from j to i
    lengths = differences.norm(p=2, dim=2, keepdim=True)
    n = x.shape[0]
    floor = ANGLE_FLOOR * lengths.detach().sum() / max(1, n * (n - 1))  # the diagonal is 0
    directions = differences / lengths.clamp_min(floor.clamp_min(1e-12))
    return torch.bmm(directions, directions.transpose(1, 2))


def rkd_angle(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """RKD-A: Huber loss between the cosines of the angles every triple (i, j, k) forms at j.

    Triples with i = j or k = j have no angle (a zero direction): 0 on both sides, counted in
    the mean over N^3 entries as in the authors' code. Memory grows as N^2 x D and N^3.
    """
    with torch.no_grad():
        target = _angles(teacher)
    return F.smooth_l1_loss(_angles(student), target)


def batch_similarity(features: torch.Tensor) -> torch.Tensor:
    """SP's (N, N) similarity: Q Q^T of the flattened activations Q (N, C*H*W), each row scaled to unit L2 norm."""
    q = features.float().flatten(1)
    return F.normalize(q @ q.t(), p=2, dim=1)


def similarity_preserving(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """SP for one layer pair: ||G_s - G_t||_F^2 / N^2 with G from :func:`batch_similarity`."""
    return (batch_similarity(student) - batch_similarity(teacher)).pow(2).mean()
