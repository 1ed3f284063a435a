"""Reading the run folders of ``scripts/compare.py``: ``OUT/runs/<algo>-s<seed>/``.

Every file is optional: a run without ``evaluations.csv`` falls back to its training returns,
a run without ``geometry.csv`` to the ``geometry/`` columns of its ``progress.csv`` (if any),
and a missing column is simply absent. Cells that are blank or not numbers read as NaN.
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

RUN_DIR = re.compile(r"^(?P<algo>[A-Za-z0-9_]+)-s(?P<seed>\d+)$")
"""The name of a run folder: ``trpo-s0``."""
STEP = "time/total_timesteps"
ELAPSED = "time/time_elapsed"
RETURN = "rollout/ep_rew_mean"
EVAL_RETURN = "mean_reward"
GEOMETRY_PREFIX = "geometry/"
FINAL_SHARE = 0.1
"""Without an evaluation, the final return is the mean over this share of the last updates."""

Table = dict[str, np.ndarray]


def run_name(algo: str, seed: int) -> str:
    """The folder of one run inside ``OUT/runs``."""
    return f"{algo}-s{seed}"


def _number(cell: str | None) -> float:
    try:
        return float(cell) if cell not in (None, "") else math.nan
    except ValueError:
        return math.nan


def read_table(path: Path) -> Table:
    """A CSV file as ``{column: float array}``; ``{}`` for a missing or unreadable file."""
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, csv.Error, UnicodeDecodeError):
        return {}
    if not rows:
        return {}
    columns = [c for c in rows[0] if c is not None]
    return {c: np.array([_number(row.get(c)) for row in rows]) for c in columns}


def _geometry_rows(progress: Table) -> Table:
    """The rows of ``progress`` that carry a geometry measurement, as a geometry table."""
    keys = [k for k in progress if k.startswith(GEOMETRY_PREFIX)]
    if not keys:
        return {}
    measured = np.zeros(len(progress[keys[0]]), dtype=bool)
    for key in keys:
        if key != GEOMETRY_PREFIX + "kl_bound":
            measured |= np.isfinite(progress[key])
    if not measured.any():
        return {}
    time_keys = [k for k in (STEP, "time/iterations", ELAPSED) if k in progress]
    return {k: progress[k][measured] for k in [*time_keys, *keys]}


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; ``{}`` when missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def cumulative_elapsed(elapsed: np.ndarray) -> np.ndarray:
    """``time/time_elapsed`` made cumulative over resumed segments.

    A resumed run restarts its clock at 0: where the elapsed time drops, the end of the
    previous segment is added to everything after it. NaN cells stay NaN.
    """
    out = np.array(elapsed, dtype=np.float64)
    offset, last = 0.0, -math.inf
    for i, value in enumerate(out):
        if not math.isfinite(value):
            continue
        if value < last:
            offset += last
        last = value
        out[i] = value + offset
    return out


@dataclass(frozen=True)
class RunData:
    """One run's logs.

    Attributes:
        algo: the algorithm (from the folder name).
        seed: the seed (from the folder name).
        path: the folder.
        progress: ``progress.csv``, one row per update.
        geometry: ``geometry.csv``, or the measured rows of ``progress.csv``; one row per
            measured update.
        geometry_source: ``"geometry.csv"``, ``"progress.csv"`` or ``""`` (none).
        evaluations: ``evaluations.csv``.
        summary: ``run_summary.json``.
    """

    algo: str
    seed: int
    path: Path
    progress: Table = field(default_factory=dict)
    geometry: Table = field(default_factory=dict)
    geometry_source: str = ""
    evaluations: Table = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        """``completed``, ``interrupted``, ``aborted`` or ``unfinished`` (no summary)."""
        return str(self.summary.get("status", "unfinished"))

    @property
    def steps(self) -> int | None:
        """Environment steps reached: the summary's, else the last logged update's."""
        if isinstance(self.summary.get("num_timesteps"), int):
            return int(self.summary["num_timesteps"])
        column = self.progress.get(STEP, np.empty(0))
        finite = column[np.isfinite(column)]
        return int(finite[-1]) if finite.size else None

    def elapsed(self, table: Table) -> np.ndarray | None:
        """Cumulative training seconds of ``table``'s rows (see :func:`cumulative_elapsed`)."""
        return cumulative_elapsed(table[ELAPSED]) if ELAPSED in table else None

    def wall_time(self) -> float | None:
        """Training seconds: the cumulative elapsed time of the last update, else the
        summary's ``wall_time_s``."""
        elapsed = self.elapsed(self.progress)
        if elapsed is not None and np.isfinite(elapsed).any():
            return float(np.nanmax(elapsed))
        value = self.summary.get("wall_time_s")
        return float(value) if isinstance(value, (int, float)) else None

    def final_return(self) -> tuple[float, str] | None:
        """``(return, source)``: the last evaluation's mean (source ``"evaluation"``), else
        the mean ``rollout/ep_rew_mean`` of the last 10% of updates (``"training"``)."""
        evals = self.evaluations.get(EVAL_RETURN)
        if evals is not None and np.isfinite(evals).any():
            return float(evals[np.isfinite(evals)][-1]), "evaluation"
        returns = self.progress.get(RETURN)
        if returns is None or not len(returns):
            return None
        tail = returns[-max(1, math.ceil(FINAL_SHARE * len(returns))) :]
        tail = tail[np.isfinite(tail)]
        return (float(tail.mean()), "training") if tail.size else None


def read_run(path: Path, algo: str, seed: int) -> RunData:
    """The logs of the run in ``path``; missing files give empty tables."""
    progress = read_table(path / "progress.csv")
    geometry = read_table(path / "geometry.csv")
    source = "geometry.csv" if geometry else ""
    if not geometry:
        geometry = _geometry_rows(progress)
        source = "progress.csv" if geometry else ""
    return RunData(
        algo=algo,
        seed=seed,
        path=path,
        progress=progress,
        geometry=geometry,
        geometry_source=source,
        evaluations=read_table(path / "evaluations.csv"),
        summary=read_json(path / "run_summary.json"),
    )


def discover_runs(runs_dir: Path, order: list[str] | None = None) -> list[RunData]:
    """Every ``<algo>-s<seed>`` folder of ``runs_dir`` with a ``progress.csv`` or a
    ``run_summary.json``, sorted by ``order`` (then by name) and seed."""
    found: list[RunData] = []
    if not runs_dir.is_dir():
        return found
    for path in sorted(runs_dir.iterdir()):
        match = RUN_DIR.match(path.name)
        has_logs = (path / "progress.csv").is_file() or (path / "run_summary.json").is_file()
        if match and path.is_dir() and has_logs:
            found.append(read_run(path, match["algo"], int(match["seed"])))
    rank = {name: i for i, name in enumerate(order or [])}
    return sorted(found, key=lambda r: (rank.get(r.algo, len(rank)), r.algo, r.seed))


def by_algo(runs: list[RunData]) -> dict[str, list[RunData]]:
    """``runs`` grouped by algorithm, in their order."""
    groups: dict[str, list[RunData]] = {}
    for run in runs:
        groups.setdefault(run.algo, []).append(run)
    return groups
