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


# -- the optimizer benchmarks ------------------------------------------------------------------

import benchmark_curves  # noqa: E402
import benchmark_optim  # noqa: E402
import torch  # noqa: E402


def _fake_run(path: Path, evals: list[tuple[int, float, float]], step_s: list[float]) -> None:
    path.mkdir(parents=True)
    rows = ["step,time/train_s,eval/train_loss"] + [f"{s},{t},{loss}" for s, t, loss in evals]
    (path / "evaluations.csv").write_text("\n".join(rows) + "\n")
    rows = ["step,train/loss,time/step_s"] + [f"{i + 1},1.0,{t}" for i, t in enumerate(step_s)]
    (path / "progress.csv").write_text("\n".join(rows) + "\n")


def test_time_to_target_reads_runs_and_picks_the_best_rate(tmp_path: Path) -> None:
    out = tmp_path / "curves"
    fast, slow, never = benchmark_curves.SWEEP["adam"]
    _fake_run(
        benchmark_curves.logdir(out, "adam", fast),
        [(0, 0, 900), (20, 2, 80), (40, 4, 50)],
        [0.1] * 40,
    )
    _fake_run(
        benchmark_curves.logdir(out, "adam", slow),
        [(0, 0, 900), (20, 1, 84), (40, 3, 70)],
        [0.05] * 40,
    )
    _fake_run(benchmark_curves.logdir(out, "adam", never), [(0, 0, 900), (40, 9, 100)], [0.2] * 40)
    runs = [benchmark_curves.read_run(out, "adam", point) for point in (fast, slow, never)]
    assert all(r is not None for r in runs)
    assert runs[0].to_target(60) == (40, 4.0)
    assert runs[1].to_target(60) is None
    assert runs[0].ms_per_step == pytest.approx(100.0)
    best = benchmark_curves.best_run(runs, target=85)  # both reach it at step 20: less time wins
    assert best.point == slow
    assert benchmark_curves.best_run(runs, target=60).point == fast
    lines = benchmark_curves.report_lines({"adam": best}, {"adam": runs}, 60)
    assert any("not reached" in line for line in lines)


def test_a_sweep_point_names_its_run_and_passes_its_hyperparameters(tmp_path: Path) -> None:
    point = benchmark_curves.Point(1.0, (("kl_clip", 0.01),))
    assert benchmark_curves.logdir(tmp_path, "kfac", point) == tmp_path / "kfac-lr1-kl_clip0.01"
    assert point.label == "lr 1, kl_clip 0.01"
    args = {"steps": 10, "eval_every": 5, "batch_size": 8, "threads": 1}
    cmd = benchmark_curves.train_command("kfac", point, args, tmp_path / "run")
    assert cmd[cmd.index("--lr") + 1] == "1" and "--hp=kl_clip=0.01" in cmd
    assert benchmark_curves.logdir(tmp_path, "adam", benchmark_curves.Point(1e-3)).name == (
        "adam-lr0.001"
    )


def test_curves_needs_a_target_and_known_optimizers(tmp_path: Path) -> None:
    out = run_cli("--curves", "--out", str(tmp_path))
    assert out.returncode == 2 and "--curves needs --target" in out.stderr.splitlines()[-1]
    out = run_cli("--curves", "--target", "60", "--optims", "lbfgs", "--out", str(tmp_path))
    assert (
        out.returncode == 2 and "--optims takes kfac, shampoo, adam, sgd, got lbfgs" in out.stderr
    )


def test_state_bytes_counts_every_optimizer_tensor() -> None:
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    n_params = sum(p.numel() for p in model.parameters())
    # exp_avg and exp_avg_sq per parameter, plus one float32 step counter per parameter
    assert benchmark_optim.state_bytes(opt) == 4 * (2 * n_params + 2)


def test_optim_step_rejects_a_partial_root_period() -> None:
    out = run_cli("--optim-step", "--steps", "15")
    assert out.returncode == 2
    assert "--steps must be a multiple of the period 10, got 15" in out.stderr.splitlines()[-1]


def test_negative_geometry_every_exits_2_with_one_line() -> None:
    out = run_cli("--algo", "ppo", "--geometry-every", "-1")
    assert out.returncode == 2
    assert "--geometry-every must be an integer >= 0" in out.stderr.strip().splitlines()[-1]
    assert "Traceback" not in out.stderr


def test_the_reference_gets_no_rl_ig_only_setting() -> None:
    _, _, hp = benchmark.zoo_settings("ppo", "HalfCheetah")
    assert hp["compile"] is True  # rl-ig's own default for MuJoCo PPO
    assert "compile" not in benchmark._sb3_kwargs("ppo", "HalfCheetah", hp)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--steps", "15"], "--curves-step needs --steps a positive multiple of 10, got 15"),
        (["--optims", "adam,lbfgs"], "--optims takes kfac, shampoo, adam, sgd, got lbfgs"),
    ],
)
def test_curves_step_rejects_bad_input_with_one_line(args: list[str], message: str) -> None:
    out = run_cli("--curves-step", *args)
    assert out.returncode == 2
    assert message in out.stderr.splitlines()[-1] and "Traceback" not in out.stderr


def test_curves_step_times_fresh_runs_and_reports_the_ratio_to_adam() -> None:
    import benchmark_curves_step as bench

    times = bench.step_time_benchmark(["adam", "sgd"], rounds=1, steps=10, batch_size=50, threads=1)
    assert set(times) == {"adam", "sgd"} and all(len(v) == 1 and v[0] > 0 for v in times.values())
    table = bench.report({"adam": [10.0, 12.0], "kfac": [22.0, 22.0]}, steps=30, batch_size=1000)
    assert "| Adam | lr 0.003 | 11.0 | 10.0–12.0 | 1.00x |" in table
    assert "| K-FAC | lr 1, kl_clip 0.01 | 22.0 | 22.0–22.0 | 2.00x |" in table


def test_curves_floor_rejects_a_batch_k_fac_cannot_subsample() -> None:
    out = run_cli("--curves-floor", "--batch-size", "30")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert (
        "--batch-size a positive multiple of 4 (K-FAC's fisher_subsample), got 30"
        in (out.stderr.splitlines()[-1])
    )


def test_curves_floor_times_every_part_and_bounds_the_step_ratios() -> None:
    import benchmark_curves_floor as bench

    ms = bench.floor_benchmark(rounds=1, batch_size=8, repeats=1)
    assert list(ms)[:2] == ["forward and backward", "Adam update"]
    assert sum(name.startswith("K-FAC ") for name in ms) == 5
    assert sum(name.startswith("Shampoo ") for name in ms) == 3
    assert all(v > 0 for v in ms.values())
    parts = {"forward and backward": 9.0, "Adam update": 1.0, "K-FAC solves": 5.0}
    parts |= {"K-FAC factor products": 3.0, "Shampoo root products": 2.0}
    table = bench.report(parts, batch_size=1000, rounds=3)
    assert "| K-FAC solves | 5.00 | 0.56 |" in table
    kfac, shampoo = table.splitlines()[-2:]
    assert kfac.startswith("- K-FAC: 8.0 ms per step beyond the forward and backward; its step")
    assert kfac.endswith("at least 1.70x Adam's (10.0 ms)")
    assert shampoo.startswith("- Shampoo: 2.0 ms") and "at least 1.10x" in shampoo
