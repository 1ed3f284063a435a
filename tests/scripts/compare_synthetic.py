"""Synthetic run folders in the layout ``scripts/train.py`` writes, for the report tests.

Each run has 50 updates of 2,000 steps; its return climbs linearly; a geometry row is logged on
every 5th update. The numbers are chosen so that the report's statistics can be checked by
hand (see :data:`FINAL_RETURNS` and :data:`KL_EXCEED`).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

UPDATES = 50
STEPS_PER_UPDATE = 2000
GEOMETRY_EVERY = 5
FINAL_RETURNS = {"trpo": (100.0, 110.0, 120.0), "ppo": (50.0, 80.0, 90.0), "acktr": (200.0,)}
"""The last evaluation's mean return per seed."""
KL_BOUNDS = {"trpo": 0.01, "ppo": float("nan"), "acktr": 0.002}
KL_EXCEED = {"trpo": 2, "acktr": 1}
"""Measured updates per seed whose ``geometry/kl_mean`` is above the bound."""
SPEED = {"trpo": 1000.0, "ppo": 4000.0, "acktr": 2000.0}
"""Steps per second."""


def write_csv(path: Path, rows: Sequence[Mapping[str, float]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _progress(algo: str, seed: int) -> list[dict[str, float]]:
    rows = []
    for i in range(1, UPDATES + 1):
        steps = i * STEPS_PER_UPDATE
        rows.append(
            {
                "time/total_timesteps": float(steps),
                "time/iterations": float(i),
                "time/time_elapsed": steps / SPEED[algo],
                "train/kl": 0.005 * (1 + 0.1 * seed),
                "train/fisher_norm": 0.1,
                "train/step_norm": 0.3,
                # the first update has no finished episode yet
                "rollout/ep_rew_mean": float("nan") if i == 1 else steps / 1000.0 + seed,
            }
        )
    return rows


def _geometry(algo: str, seed: int) -> list[dict[str, float]]:
    bound = KL_BOUNDS[algo]
    rows = []
    for k, i in enumerate(range(1, UPDATES + 1, GEOMETRY_EVERY)):
        above = k < KL_EXCEED.get(algo, 0)
        kl = (1.5 if above else 0.5) * (bound if np.isfinite(bound) else 0.01)
        row = {
            "time/total_timesteps": float(i * STEPS_PER_UPDATE),
            "time/iterations": float(i),
            "time/time_elapsed": i * STEPS_PER_UPDATE / SPEED[algo],
            "geometry/kl_mean": kl,
            "geometry/kl_max": 3 * kl,
            "geometry/kl_bound": bound,
            "geometry/fisher_norm": float(np.sqrt(2 * kl)),
            "geometry/euclidean_norm": 0.2 + 0.01 * k + 0.05 * seed,
            "geometry/ng_cosine": 0.9 - 0.01 * k if algo != "ppo" else 0.5 + 0.01 * seed,
        }
        if algo == "acktr":
            row["geometry/kfac_error"] = 0.3 + 0.01 * k
        rows.append(row)
    return rows


def write_run(runs: Path, algo: str, seed: int, *, geometry: bool = True) -> Path:
    """One completed run folder ``runs/<algo>-s<seed>``."""
    path = runs / f"{algo}-s{seed}"
    path.mkdir(parents=True)
    write_csv(path / "progress.csv", _progress(algo, seed))
    if geometry:
        write_csv(path / "geometry.csv", _geometry(algo, seed))
    final = FINAL_RETURNS[algo][seed]
    steps = UPDATES * STEPS_PER_UPDATE
    write_csv(path / "evaluations.csv", [{"timesteps": steps, "mean_reward": final}])
    summary = {
        "algo": algo,
        "env_id": "Pendulum-v1",
        "seed": seed,
        "status": "completed",
        "num_timesteps": steps,
        "total_timesteps": steps,
        "wall_time_s": steps / SPEED[algo] + 1.0,
        "hyperparameters": {"policy": {"pi": [64, 64], "vf": [64, 64]}},
    }
    (path / "run_summary.json").write_text(json.dumps(summary))
    return path


def write_runs(out: Path, algos: Sequence[str] = ("trpo", "ppo", "acktr")) -> Path:
    """Every run of :data:`FINAL_RETURNS` for ``algos`` under ``out/runs``; returns ``out``."""
    for algo in algos:
        for seed in range(len(FINAL_RETURNS[algo])):
            write_run(out / "runs", algo, seed)
    return out
