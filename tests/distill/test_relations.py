"""Relation-based losses against hand computations on three points, and what they must ignore."""
import math

import pytest
import torch

from datafree.distill.losses import attention_transfer
from datafree.distill.relations import batch_similarity, pairwise_distances, rkd_angle, rkd_distance, similarity_preserving

# A 3-4-5 right triangle (the teacher) and an isosceles right triangle (the student), in 2-D.
TEACHER = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
STUDENT = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])


def _huber(d: float) -> float:
    return 0.5 * d * d if abs(d) < 1 else abs(d) - 0.5


def test_pairwise_distances_by_hand():
    expected = torch.tensor([[0.0, 3.0, 4.0], [3.0, 0.0, 5.0], [4.0, 5.0, 0.0]])
    assert torch.allclose(pairwise_distances(TEACHER), expected, atol=1e-5)


def test_rkd_distance_by_hand():
    # Teacher: distances 3, 4, 5, mean 4: 0.75, 1, 1.25. Student: 1, 1, sqrt 2, mean (2 + sqrt 2) / 3.
    mu = (2 + math.sqrt(2)) / 3
    pairs = [(0.75, 1 / mu), (1.0, 1 / mu), (1.25, math.sqrt(2) / mu)]
    expected = 2 * sum(_huber(s - t) for t, s in pairs) / 9  # each pair twice; the 9 entries include the diagonal
    assert rkd_distance(STUDENT, TEACHER).item() == pytest.approx(expected, rel=1e-5)
    # Scale-free: a student that is the teacher scaled has nothing to learn.
    assert rkd_distance(TEACHER * 7, TEACHER).item() == pytest.approx(0.0, abs=1e-6)


def test_rkd_angle_by_hand():
    # Cosines of the angles at each vertex: teacher 0 (right angle), 0.6 = 9/15, 0.8 = 16/20; student 0, 1/sqrt2, 1/sqrt2.
    # Each vertex j has 2 ordered pairs (i, k) of the other two with i != k; i == k gives cos 1 on both sides,
    # and i == j or k == j no angle (0 on both sides). 27 entries in all.
    r = 1 / math.sqrt(2)
    expected = 2 * (_huber(0.0) + _huber(r - 0.6) + _huber(r - 0.8)) / 27
    assert rkd_angle(STUDENT, TEACHER).item() == pytest.approx(expected, rel=1e-5)
    # Angles do not change under rotation, translation and scale.
    rotation = torch.tensor([[0.6, -0.8], [0.8, 0.6]])
    assert rkd_angle(3 * TEACHER @ rotation + 5, TEACHER).item() == pytest.approx(0.0, abs=1e-6)


def test_similarity_preserving_by_hand():
    teacher = torch.tensor([[1.0, 0.0], [1.0, 1.0]])  # G = [[1, 1], [1, 2]], rows / sqrt2 and / sqrt5
    student = torch.tensor([[2.0, 0.0], [0.0, 3.0]])  # G = diag(4, 9): rows [1, 0], [0, 1]
    a, b, c = 1 / math.sqrt(2), 1 / math.sqrt(5), 2 / math.sqrt(5)
    expected = ((a - 1) ** 2 + a**2 + b**2 + (c - 1) ** 2) / 4  # ||G_s - G_t||_F^2 / N^2
    assert similarity_preserving(student, teacher).item() == pytest.approx(expected, rel=1e-5)
    # Feature maps are flattened; widths may differ between the two networks.
    maps = torch.randn(4, 8, 3, 3)
    assert batch_similarity(maps).shape == (4, 4)
    assert similarity_preserving(maps, torch.randn(4, 2, 5, 5)).item() > 0


def test_relation_gradients_are_finite_where_samples_coincide():
    student = torch.tensor([[1.0, 2.0], [1.0, 2.0], [0.0, 1.0]], requires_grad=True)
    (rkd_distance(student, TEACHER) + rkd_angle(student, TEACHER)).backward()
    assert torch.isfinite(student.grad).all()


def test_attention_pair_weights_by_hand():
    # One pixel each: attention maps are all 1 after normalisation unless the energy is spread.
    t1, s1 = torch.ones(1, 2, 1, 2), torch.tensor([[[[1.0, 0.0]], [[1.0, 0.0]]]])
    t2, s2 = torch.ones(1, 1, 2, 1), torch.tensor([[[[0.0], [2.0]]]])
    # Pair 1: maps [a, a] vs [1, 0] with a = 1/sqrt2: ((a - 1)^2 + a^2) / 2; pair 2: [a, a] vs [0, 1], the same.
    a = 1 / math.sqrt(2)
    one = ((a - 1) ** 2 + a**2) / 2
    assert attention_transfer([s1, s2], [t1, t2]).item() == pytest.approx(2 * one, rel=1e-5)
    assert attention_transfer([s1, s2], [t1, t2], [3.0, 0.5]).item() == pytest.approx(3.5 * one, rel=1e-5)


def test_rkd_angle_gradient_stays_bounded_for_near_duplicates():
    # Two samples a millionth of the batch's scale apart: the direction between them is noise. Without the
    # floor its gradient grows as one over their distance; with it, as one over 1% of the mean pair distance.
    torch.manual_seed(0)
    teacher = torch.randn(8, 16)
    spread = torch.randn(8, 16)
    gradients = []
    for gap in (1e-2, 1e-6):
        student = spread.clone()
        student[1] = student[0] + gap * torch.randn(16)
        student.requires_grad_(True)
        rkd_angle(student, teacher).backward()
        gradients.append(student.grad.norm().item())
    assert math.isfinite(gradients[1])
    assert gradients[1] < 10 * gradients[0]  # a thousandfold closer pair, no thousandfold gradient


def test_rkd_angle_is_unchanged_for_separated_samples():
    # The floor only touches pairs closer than 1% of the mean distance: the 3-4-5 triangle is far from it,
    # and the angles of a generic batch match a plain normalisation.
    torch.manual_seed(1)
    x = torch.randn(6, 5)
    plain = torch.nn.functional.normalize(x.unsqueeze(0) - x.unsqueeze(1), p=2, dim=2)
    plain = torch.bmm(plain, plain.transpose(1, 2))
    from datafree.distill.relations import _angles
    assert torch.allclose(_angles(x), plain, atol=1e-6)
