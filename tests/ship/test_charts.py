"""datafree.ship.charts: the axes carry round values, and every picture draws from a report's rows."""
import math

import pytest

from datafree.ship.charts import _log_ticks, _round_ticks, scatter_panel


@pytest.mark.parametrize("low, high", [(0.5, 1.0), (0.0, 0.13), (0.37, 0.62), (12.0, 980.0)])
def test_linear_ticks_are_round_multiples_inside_the_range(low, high):
    ticks = _round_ticks(low, high)
    assert 2 <= len(ticks) <= 6 and all(low - 1e-9 <= t <= high + 1e-9 for t in ticks)
    step = ticks[1] - ticks[0]
    mantissa = step / 10 ** math.floor(math.log10(step))
    assert any(abs(mantissa - m) < 1e-6 for m in (1, 2, 5, 10))
    assert all(abs(t / step - round(t / step)) < 1e-6 for t in ticks)


def test_log_ticks_are_one_two_five_and_powers_of_ten_over_wide_ranges():
    narrow = [10 ** v for v in _log_ticks(math.log10(0.0244), math.log10(0.891))]
    assert narrow == pytest.approx([0.05, 0.1, 0.2, 0.5])
    wide = [10 ** v for v in _log_ticks(math.log10(0.3), math.log10(300))]
    assert wide == pytest.approx([1, 10, 100])


def test_a_scatter_of_points_at_one_latency_draws():
    panel = scatter_panel([("a", 0.1, 0.5), ("b", 0.1, 0.5)], "t", "x", "y")  # no spread in x or y
    assert panel.size == (560, 360)
