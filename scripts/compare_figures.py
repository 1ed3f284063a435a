"""The figures of the ``scripts/compare.py`` report, one PNG each (matplotlib, Agg backend).

Every figure copes with missing data: an algorithm without the column it needs is left out
and named in the caption, and a figure with nothing to draw is skipped with a note instead of
a PNG. Each algorithm keeps one colour across all figures.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from compare_runs import RETURN, STEP, RunData  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from rl_ig.run.stats import bootstrap_band, common_grid  # noqa: E402

COLOURS = {
    "trpo": "tab:blue",
    "npg": "tab:orange",
    "ppo": "tab:green",
    "acktr": "tab:red",
    "a2c": "tab:purple",
}
"""Each algorithm's colour in every figure; others take the rest of the tab10 cycle."""
_SPARE = ("tab:brown", "tab:pink", "tab:gray", "tab:olive", "tab:cyan")
CONFIDENCE = 0.95
GRID_POINTS = 200
FEW_POINTS = 30
"""Curves of at most this many logged points get markers (a lone point is otherwise unseen)."""
KFAC_ALGOS = ("acktr",)
"""Algorithms whose updates use K-FAC and log ``geometry/kfac_error``."""

TRAIN_RETURN = "training episode return"
Groups = dict[str, list[RunData]]
Series = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class FigureResult:
    """One figure of the report: its PNG (``None`` when skipped) and what to say about it."""

    name: str
    title: str
    caption: str
    png: bytes | None = None


def colour(algo: str, algos: list[str]) -> str:
    """The colour of ``algo``; ``algos`` (all of the report's) fixes the spare ones."""
    if algo in COLOURS:
        return COLOURS[algo]
    others = [a for a in algos if a not in COLOURS]
    return _SPARE[others.index(algo) % len(_SPARE)] if algo in others else "black"


def _series(run: RunData, table: str, x_key: str, y_key: str, positive: bool = False) -> Series:
    """The finite ``(x, y)`` pairs of a run's ``progress`` or ``geometry`` table, x sorted;
    ``x_key`` ``"elapsed"`` is the cumulative training time."""
    data = run.progress if table == "progress" else run.geometry
    x = run.elapsed(data) if x_key == "elapsed" else data.get(x_key)
    y = data.get(y_key)
    if x is None or y is None:
        return np.empty(0), np.empty(0)
    keep = np.isfinite(x) & np.isfinite(y) & ((y > 0) if positive else True)
    order = np.argsort(x[keep], kind="stable")
    return x[keep][order], y[keep][order]


def _legend(ax: Axes) -> None:
    """A legend outside the axes, on the right, so that it never covers data."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, frameon=False)


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def _missing(algos: list[str], what: str) -> str:
    return f" No {what} for {', '.join(algos)}." if algos else ""


def band_figure(
    groups: Groups,
    spec: tuple[str, str, str],
    labels: tuple[str, str, str],
    name: str,
    algos: list[str] | None = None,
) -> FigureResult:
    """Mean over seeds with a 95% bootstrap band (seeds resampled) of one column.

    Args:
        groups: runs by algorithm.
        spec: ``(table, x column, y column)``; table ``"progress"`` or ``"geometry"``.
        labels: ``(title, x label, y label)``.
        name: the PNG's file name.
        algos: the algorithms to draw (default: all of ``groups``).
    """
    title, x_label, y_label = labels
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    drawn, missing = [], []
    for algo in algos if algos is not None else list(groups):
        curves = [_series(r, *spec) for r in groups[algo]]
        curves = [c for c in curves if c[0].size]
        if not curves or not _draw_band(ax, algo, curves, list(groups)):
            missing.append(algo)
        else:
            drawn.append(algo)
    if not drawn:
        plt.close(fig)
        return FigureResult(name, title, f"Skipped: no run logs {spec[2]}.")
    ax.set(title=title, xlabel=x_label, ylabel=y_label)
    ax.grid(alpha=0.3)
    _legend(ax)
    caption = (
        f"Mean over seeds of {spec[2]} on a common grid (linear interpolation between logged "
        f"updates); the shaded band is the {CONFIDENCE:.0%} percentile-bootstrap interval of "
        "the mean, resampling seeds (none with one seed)." + _missing(missing, spec[2])
    )
    return FigureResult(name, title, caption, _png(fig))


def _draw_band(ax: Axes, algo: str, curves: list[Series], algos: list[str]) -> bool:
    """Draw one algorithm's mean and band; ``False`` when its seeds do not overlap in x.

    Curves of few points are drawn at their logged abscissae, with markers.
    """
    xs, ys = [c[0] for c in curves], [c[1] for c in curves]
    few = max(x.size for x in xs) <= FEW_POINTS
    try:
        points = np.concatenate(xs) if few else None
        grid, values = common_grid(xs, ys, GRID_POINTS, points)
    except ValueError:
        return False
    mean, low, high = bootstrap_band(values, CONFIDENCE)
    c = colour(algo, algos)
    seeds = f"{len(curves)} seed{'s' if len(curves) > 1 else ''}"
    ax.plot(grid, mean, color=c, marker="o" if few else None, ms=3, label=f"{algo} ({seeds})")
    if len(curves) > 1:
        ax.fill_between(grid, low, high, color=c, alpha=0.2, linewidth=0)
    return True


def return_vs_steps(groups: Groups) -> FigureResult:
    """Training return against environment steps."""
    labels = ("Return against environment steps", "environment steps", TRAIN_RETURN)
    return band_figure(groups, ("progress", STEP, RETURN), labels, "return_vs_steps.png")


def return_vs_time(groups: Groups) -> FigureResult:
    """Training return against wall-clock seconds of training."""
    labels = ("Return against wall-clock time", "training wall-clock time (s)", TRAIN_RETURN)
    return band_figure(groups, ("progress", "elapsed", RETURN), labels, "return_vs_time.png")


def ng_cosine(groups: Groups) -> FigureResult:
    """Fisher cosine of each step to the natural gradient against steps."""
    labels = (
        "Cosine of the step to the natural gradient",
        "environment steps",
        "Fisher-metric cosine to F⁻¹g",
    )
    spec = ("geometry", STEP, "geometry/ng_cosine")
    return band_figure(groups, spec, labels, "ng_cosine.png")


def kfac_error(groups: Groups) -> FigureResult:
    """K-FAC's relative error against steps, for the K-FAC algorithms only."""
    labels = (
        "K-FAC relative error of the natural-gradient direction",
        "environment steps",
        "‖F̂⁻¹g − (F + λI)⁻¹g‖ / ‖(F + λI)⁻¹g‖",
    )
    spec = ("geometry", STEP, "geometry/kfac_error")
    algos = [a for a in groups if a in KFAC_ALGOS]
    if not algos:
        name = "kfac_error.png"
        return FigureResult(name, labels[0], "Skipped: no K-FAC algorithm (acktr) compared.")
    return band_figure(groups, spec, labels, "kfac_error.png", algos)


def _kl_source(runs: list[RunData]) -> tuple[str, str]:
    """``(table, column)`` of the per-update KL: geometry/kl_mean where logged, else train/kl."""
    if any(_series(r, "geometry", STEP, "geometry/kl_mean")[0].size for r in runs):
        return "geometry", "geometry/kl_mean"
    return "progress", "train/kl"


def _draw_kl(ax: Axes, algo: str, runs: list[RunData], algos: list[str]) -> str | None:
    """One algorithm's KL per update (a thin line per seed) and its bound; the column drawn."""
    table, column = _kl_source(runs)
    c, label = colour(algo, algos), f"{algo} ({column})"
    drew = None
    for run in runs:
        x, y = _series(run, table, STEP, column, positive=True)
        if x.size:
            marker = "o" if x.size <= FEW_POINTS else None
            ax.plot(x, y, color=c, alpha=0.6, linewidth=0.9, marker=marker, ms=3, label=label)
            label, drew = "_", column
    bounds = [_series(r, "geometry", STEP, "geometry/kl_bound", positive=True) for r in runs]
    bound = next((b for b in bounds if b[0].size), None)
    if drew and bound is not None:
        ax.plot(*bound, color=c, linestyle="--", linewidth=1.4, label=f"{algo} KL bound")
    return drew


def kl_per_update(groups: Groups) -> FigureResult:
    """The KL between consecutive policies per update, log scale, with each bound dashed."""
    title, name = "KL divergence per update", "kl_per_update.png"
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    columns = {algo: _draw_kl(ax, algo, runs, list(groups)) for algo, runs in groups.items()}
    missing = [a for a, col in columns.items() if col is None]
    if len(missing) == len(columns):
        plt.close(fig)
        return FigureResult(name, title, "Skipped: no run logs geometry/kl_mean or train/kl.")
    ax.set(title=title, xlabel="environment steps", ylabel="mean KL(π_old ‖ π_new) (nats)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")
    _legend(ax)
    caption = (
        "Mean KL between the policies before and after each update, one line per seed "
        "(geometry/kl_mean on measured updates where logged, else train/kl on every update); "
        "dashed: the algorithm's KL bound (geometry/kl_bound), where it has one."
        + _missing(missing, "KL")
    )
    return FigureResult(name, title, caption, _png(fig))


_NORM_COLUMNS = (
    ("geometry", "geometry/euclidean_norm", "geometry/fisher_norm"),
    ("progress", "train/step_norm", "train/fisher_norm"),
)
"""Where the step norms are read from, in order of preference."""


def _norm_pairs(run: RunData) -> tuple[Series, str]:
    """The positive ``(Euclidean, Fisher)`` norms of a run's steps and their columns."""
    for table, x_key, y_key in _NORM_COLUMNS:
        x, y = _series(run, table, x_key, y_key, positive=True)
        if (x > 0).any():
            return (x[x > 0], y[x > 0]), f"{y_key} against {x_key}"
    return (np.empty(0), np.empty(0)), ""


def fisher_vs_euclidean(groups: Groups) -> FigureResult:
    """Scatter of each step's Fisher norm against its Euclidean norm, log-log."""
    title, name = "Fisher norm against Euclidean norm of each step", "fisher_vs_euclidean.png"
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    missing, sources = [], set()
    for algo, runs in groups.items():
        pairs = [_norm_pairs(r) for r in runs]
        x = np.concatenate([p[0][0] for p in pairs])
        y = np.concatenate([p[0][1] for p in pairs])
        if not x.size:
            missing.append(algo)
            continue
        sources |= {p[1] for p in pairs if p[1]}
        ax.scatter(x, y, s=9, alpha=0.5, color=colour(algo, list(groups)), label=algo)
    if len(missing) == len(groups):
        plt.close(fig)
        return FigureResult(name, title, "Skipped: no run logs Fisher and Euclidean step norms.")
    ax.set(title=title, xlabel="Euclidean norm ‖Δθ‖", ylabel="Fisher norm √(ΔθᵀFΔθ)")
    ax.set(xscale="log", yscale="log")
    ax.grid(alpha=0.3, which="both")
    _legend(ax)
    caption = (
        f"One point per measured update, all seeds ({'; '.join(sorted(sources))})."
        + _missing(missing, "step norms")
    )
    return FigureResult(name, title, caption, _png(fig))


FIGURES: tuple[Callable[[Groups], FigureResult], ...] = (
    return_vs_steps,
    return_vs_time,
    kl_per_update,
    fisher_vs_euclidean,
    ng_cosine,
    kfac_error,
)
"""The report's figures, in order."""


def make_figures(groups: Groups) -> list[FigureResult]:
    """Every figure of the report for runs grouped by algorithm."""
    return [figure(groups) for figure in FIGURES]
