"""``scripts/benchmark.py``: ``--hp`` overrides and their one-line errors (no training runs)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

import benchmark  # noqa: E402


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "scripts/benchmark.py", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_overrides_merge_over_the_tuned_settings() -> None:
    _, run, hp = benchmark.zoo_settings("acktr", "HalfCheetah", {"max_kl": 0.02, "n_envs": 2})
    assert hp["max_kl"] == 0.02 and run["n_envs"] == 2
    assert hp["n_steps"] == benchmark.zoo_settings("acktr", "HalfCheetah")[2]["n_steps"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--hp", "max_kl=0.1"], "--hp overrides rl-ig's settings only; add --libs rl-ig"),
        (["--libs", "rl-ig", "--hp", "max_kl=-1"], "max_kl must be in (0.0, inf), got -1.0"),
        (["--libs", "rl-ig", "--hp", "no_such=1"], "unknown hyperparameter 'no_such'"),
        (["--libs", "rl-ig", "--hp", "max_kl"], "is not of the form key=value"),
    ],
)
def test_bad_overrides_exit_2_with_one_line(args: list[str], message: str, tmp_path) -> None:
    out = run_cli("--algo", "acktr", "--returns", "--out", str(tmp_path), *args)
    assert out.returncode == 2
    assert message in out.stderr.strip().splitlines()[-1]
    assert "Traceback" not in out.stderr
    assert not any(tmp_path.iterdir())
