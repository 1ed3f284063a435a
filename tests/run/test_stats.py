"""``rl_ig.run.stats`` against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rl_ig.run.stats import bootstrap_band, bootstrap_ci, common_grid, iqm, share_above


def test_bootstrap_ci_of_one_value_or_equal_values_is_that_value() -> None:
    assert bootstrap_ci([5.0]) == (5.0, 5.0)
    assert bootstrap_ci([2.0, 2.0, 2.0]) == (2.0, 2.0)


def test_bootstrap_ci_of_two_values_spans_both() -> None:
    # Resampled means are 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4: both 2.5% tails sit in
    # the end atoms.
    assert bootstrap_ci([0.0, 1.0]) == (0.0, 1.0)


def test_bootstrap_ci_cuts_the_rare_all_ones_resample() -> None:
    # The mean of a resample of (0, 0, 0, 1) is k/4, k ~ Binomial(4, 1/4):
    # P(k = 0) = 0.32 > 2.5%, and P(k <= 2) = 0.949 < 97.5% < P(k <= 3) = 0.996.
    assert bootstrap_ci([0.0, 0.0, 0.0, 1.0]) == (0.0, 0.75)


def test_bootstrap_is_reproducible_for_a_seed() -> None:
    values = [1.0, 4.0, 2.5, 7.0, 3.0]
    assert bootstrap_ci(values, seed=3) == bootstrap_ci(values, seed=3)
    low, high = bootstrap_ci(values)
    assert low < np.mean(values) < high


def test_bootstrap_band_resamples_whole_curves() -> None:
    mean, low, high = bootstrap_band([[0.0, 1.0], [2.0, 3.0]])
    np.testing.assert_array_equal(mean, [1.0, 2.0])
    np.testing.assert_array_equal(low, [0.0, 1.0])
    np.testing.assert_array_equal(high, [2.0, 3.0])


def test_bootstrap_band_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"curves must be \(n_seeds >= 1, n_points\)"):
        bootstrap_band([1.0, 2.0])
    with pytest.raises(ValueError, match="confidence must be in"):
        bootstrap_ci([1.0], confidence=1.0)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([1.0, 2.0, 3.0, 4.0], 2.5),  # one cut from each end: mean(2, 3)
        ([1.0, 2.0, 3.0, 100.0], 2.5),
        ([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0], 4.5),  # mean(3, 4, 5, 6)
        ([1.0, 2.0, 9.0], 4.0),  # three seeds: nothing is cut, the mean
        ([7.0], 7.0),
    ],
)
def test_iqm(values: list[float], expected: float) -> None:
    assert iqm(values) == pytest.approx(expected)


def test_common_grid_spans_the_overlap() -> None:
    grid, curves = common_grid([[0, 10], [2, 6, 12]], [[0, 10], [0, 4, 10]], n_points=3)
    np.testing.assert_allclose(grid, [2.0, 6.0, 10.0])
    np.testing.assert_allclose(curves, [[2.0, 6.0, 10.0], [0.0, 4.0, 8.0]])
    with pytest.raises(ValueError, match="do not overlap"):
        common_grid([[0, 1], [2, 3]], [[0, 1], [0, 1]])


def test_share_above_ignores_unknown_pairs() -> None:
    nan = math.nan
    assert share_above([0.01, 0.05, nan, 0.02], [0.04, 0.04, 0.04, nan]) == 0.5
    assert share_above([0.01, 0.02], [nan, nan]) is None


def test_common_grid_at_given_points_keeps_those_in_the_overlap() -> None:
    grid, curves = common_grid([[0, 10], [2, 12]], [[0, 10], [0, 10]], points=[0, 2, 2, 5, 12])
    np.testing.assert_allclose(grid, [2.0, 5.0])
    np.testing.assert_allclose(curves, [[2.0, 5.0], [0.0, 3.0]])
