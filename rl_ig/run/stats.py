"""Statistics over the seeds of a set of runs: bootstrap confidence intervals of the mean, the
interquartile mean, curves put on a common grid, and the share of updates past a KL bound.

Everything is a pure function of numpy arrays. The bootstrap resamples seeds (whole runs), the
unit that is independent (Efron & Tibshirani 1993, ch. 13; Agarwal et al. 2021 for the IQM);
it takes a seed for its generator so that a report built twice is identical.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.stats import trim_mean

N_RESAMPLES = 10_000
"""Bootstrap resamples unless told otherwise."""
BOOTSTRAP_SEED = 0
"""The seed of the bootstrap's ``numpy.random.Generator`` unless told otherwise."""

Array = NDArray[np.float64]


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")


def bootstrap_band(
    curves: ArrayLike,
    confidence: float = 0.95,
    n_resamples: int = N_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[Array, Array, Array]:
    """Mean over seeds of ``curves`` with a percentile-bootstrap confidence band.

    Each resample draws ``n_seeds`` whole curves with replacement (the same draw at every
    point), and the band is the ``(1 ± confidence)/2`` quantiles of the resampled means.

    Args:
        curves: ``(n_seeds, n_points)``, one row per seed on a common grid.
        confidence: the band's coverage, in (0, 1).
        n_resamples: bootstrap resamples, >= 1.
        seed: the seed of the resampling generator.

    Returns:
        ``(mean, low, high)``, each ``(n_points,)``; with one seed all three are that curve.

    Raises:
        ValueError: for an empty or non-2-d ``curves``, or a bad ``confidence``.
    """
    data = np.asarray(curves, dtype=np.float64)
    if data.ndim != 2 or data.shape[0] == 0:
        raise ValueError(f"curves must be (n_seeds >= 1, n_points), got shape {data.shape}")
    _check_confidence(confidence)
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples!r}")
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, data.shape[0], size=(n_resamples, data.shape[0]))
    means = data[picks].mean(axis=1)  # (n_resamples, n_points)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail], axis=0)
    return data.mean(axis=0), low, high


def bootstrap_ci(
    values: ArrayLike,
    confidence: float = 0.95,
    n_resamples: int = N_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the mean of ``values`` (one per seed).

    Args:
        values: ``(n_seeds,)``, at least one.
        confidence: the interval's coverage, in (0, 1).
        n_resamples: bootstrap resamples, >= 1.
        seed: the seed of the resampling generator.

    Returns:
        ``(low, high)``; ``(v, v)`` for a single value ``v``.
    """
    data = np.asarray(values, dtype=np.float64).reshape(-1, 1)
    _, low, high = bootstrap_band(data, confidence, n_resamples, seed)
    return float(low[0]), float(high[0])


def iqm(values: ArrayLike) -> float:
    """Interquartile mean: the mean of the middle 50%, ``scipy.stats.trim_mean(x, 0.25)``.

    ``⌊n/4⌋`` values are cut from each end, so with fewer than 4 values nothing is cut and the
    IQM equals the mean.

    Raises:
        ValueError: for no values.
    """
    data = np.asarray(values, dtype=np.float64).ravel()
    if data.size == 0:
        raise ValueError("iqm needs at least one value")
    return float(trim_mean(data, 0.25))


def common_grid(
    xs: Sequence[ArrayLike],
    ys: Sequence[ArrayLike],
    n_points: int = 100,
    points: ArrayLike | None = None,
) -> tuple[Array, Array]:
    """Curves of different sampling put on one grid by linear interpolation.

    The grid spans the range every curve covers (the latest start to the earliest end), so no
    curve is extrapolated.

    Args:
        xs: one increasing ``(n_i,)`` array of abscissae per curve, each non-empty.
        ys: the matching ordinates.
        n_points: grid points of a uniform grid, >= 2 (1 when the curves overlap in a single
            point).
        points: the grid itself instead (those outside the common range are dropped).

    Returns:
        ``(grid (n_points,), curves (n_curves, n_points))``.

    Raises:
        ValueError: for no curves, an empty or mismatched curve, or curves that do not overlap.
    """
    if not xs or len(xs) != len(ys):
        raise ValueError(f"need one y per x and at least one curve, got {len(xs)} and {len(ys)}")
    pairs = [(np.asarray(x, np.float64), np.asarray(y, np.float64)) for x, y in zip(xs, ys)]
    if any(x.size == 0 or x.shape != y.shape for x, y in pairs):
        raise ValueError("every curve needs as many x as y values, at least one")
    start, end = max(x[0] for x, _ in pairs), min(x[-1] for x, _ in pairs)
    if start > end:
        raise ValueError(f"the curves do not overlap (latest start {start} > earliest end {end})")
    if points is None:
        grid = np.linspace(start, end, n_points if end > start else 1)
    else:
        grid = np.unique(np.asarray(points, np.float64))
        grid = grid[(grid >= start) & (grid <= end)]
    return grid, np.stack([np.interp(grid, x, y) for x, y in pairs])


def share_above(values: ArrayLike, bounds: ArrayLike) -> float | None:
    """The share of pairs with ``value > bound`` among those where both are finite.

    Returns:
        A fraction in [0, 1], or ``None`` when no pair has a finite bound and value.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    b = np.asarray(bounds, dtype=np.float64).ravel()
    if v.shape != b.shape:
        raise ValueError(f"values and bounds differ in length: {v.size} and {b.size}")
    known = np.isfinite(v) & np.isfinite(b)
    if not known.any():
        return None
    return float(np.mean(v[known] > b[known]))
