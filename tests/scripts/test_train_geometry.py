"""``scripts/train.py --geometry-every``: ``geometry.csv``, TensorBoard tags, resume, errors."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from agents import TRPO

REPO = Path(__file__).resolve().parents[2]
SCRIPT = "scripts/train.py"
TINY = [
    *("--algo", "trpo", "--env", "Pendulum", "--n-envs", "1"),
    *("--hp", "n_steps=256", "--hp", "n_critic_updates=1", "--hp", "cg_iters=3"),
    "--no-progress",
]
TIMEOUT_S = 120
STEP_COLUMNS = ["time/total_timesteps", "time/iterations", "time/time_elapsed"]
TRPO_GEOMETRY = [
    "geometry/backtracks",
    "geometry/accepted_fraction",
    "geometry/kl_bound",
    "geometry/kl_mean",
    "geometry/kl_max",
    "geometry/fisher_norm",
    "geometry/euclidean_norm",
    "geometry/ng_cosine",
    "geometry/predicted_gain",
    "geometry/fisher_eig_1",
    "geometry/fisher_eig_2",
    "geometry/fisher_eig_3",
    "geometry/obtained_gain",
    "geometry/gain_ratio",
]


def _train(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, SCRIPT, *TINY, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )


def _rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


@pytest.fixture(scope="module")
def measured_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three updates of 256 steps, each measured, with a checkpoint after the second."""
    logdir = tmp_path_factory.mktemp("geometry")
    result = _train(
        ["--steps", "768", "--save-every", "512", "--geometry-every", "1", "--logdir", str(logdir)]
    )
    assert result.returncode == 0, result.stderr
    return logdir


def test_geometry_csv_has_one_row_per_measured_update(measured_run: Path) -> None:
    columns, rows = _rows(measured_run / "geometry.csv")
    assert columns == STEP_COLUMNS + TRPO_GEOMETRY
    assert [row["time/total_timesteps"] for row in rows] == ["256.0", "512.0", "768.0"]
    assert [row["time/iterations"] for row in rows] == ["1.0", "2.0", "3.0"]
    assert all(row["geometry/kl_bound"] == "0.01" for row in rows)
    assert all(float(row["geometry/fisher_norm"]) > 0.0 for row in rows)
    _, progress = _rows(measured_run / "progress.csv")  # the same values as progress.csv's
    for row, full in zip(rows, progress):
        assert row == {key: full[key] for key in row}


def test_geometry_tags_are_in_tensorboard(measured_run: Path) -> None:
    (event_file,) = measured_run.glob("events.out.tfevents.*")
    events = EventAccumulator(str(event_file)).Reload()
    assert set(TRPO_GEOMETRY) <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("geometry/ng_cosine")] == [256, 512, 768]


def test_every_nth_update_is_measured_and_0_measures_none(tmp_path: Path) -> None:
    every = _train(["--steps", "768", "--geometry-every", "2", "--logdir", str(tmp_path / "a")])
    never = _train(["--steps", "512", "--geometry-every", "0", "--logdir", str(tmp_path / "b")])
    assert every.returncode == 0 and never.returncode == 0, every.stderr + never.stderr
    _, rows = _rows(tmp_path / "a" / "geometry.csv")
    assert [row["time/iterations"] for row in rows] == ["1.0", "3.0"]
    assert not (tmp_path / "b" / "geometry.csv").exists()
    _, progress = _rows(tmp_path / "b" / "progress.csv")
    assert "geometry/fisher_norm" not in progress[0] and "geometry/kl_bound" in progress[0]
    assert TRPO.load(tmp_path / "b" / "final.pt").geometry_every == 0
    summary = json.loads((tmp_path / "b" / "run_summary.json").read_text())
    assert summary["geometry_every"] == 0


def test_resume_keeps_geometry_rows_up_to_the_checkpoint_and_its_setting(
    measured_run: Path, tmp_path: Path
) -> None:
    logdir = tmp_path / "resumed"
    shutil.copytree(measured_run, logdir)
    _, before = _rows(logdir / "geometry.csv")
    # No --geometry-every: the checkpoint's 1 holds (the default 10 would measure neither
    # the third nor the fourth update).
    result = _train(
        ["--steps", "1024", "--logdir", str(logdir), "--resume", str(logdir / "checkpoint.pt")]
    )
    assert result.returncode == 0, result.stderr
    _, rows = _rows(logdir / "geometry.csv")
    assert [row["time/total_timesteps"] for row in rows] == ["256.0", "512.0", "768.0", "1024.0"]
    assert rows[:2] == before[:2]
    assert rows[2] != before[2]  # the row written after the checkpoint was replaced


@pytest.mark.parametrize("value", ["-1", "1.5", "ten"])
def test_bad_geometry_every_is_one_line_error(value: str, tmp_path: Path) -> None:
    result = _train(["--steps", "256", "--geometry-every", value, "--logdir", str(tmp_path)])
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: argument --geometry-every: must be a whole number of updates >= 0 such as 10 "
        f"(0: never), got {value!r} (see scripts/train.py --help)"
    ]
