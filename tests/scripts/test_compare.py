"""``scripts/compare.py``: one-line errors, the report from synthetic run folders (every file
and column optional), resuming decisions, and short real comparisons on CartPole."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import matplotlib.image
import pytest
from compare_synthetic import write_run, write_runs

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

import compare  # noqa: E402
from compare_jobs import RunSpec, plan  # noqa: E402
from compare_runs import cumulative_elapsed  # noqa: E402

FIGURES = (
    "return_vs_steps.png",
    "return_vs_time.png",
    "kl_per_update.png",
    "fisher_vs_euclidean.png",
    "ng_cosine.png",
    "kfac_error.png",
)
TIMEOUT_S = 180
REAL = ["--env", "CartPole", "--algos", "ppo,a2c", "--seeds", "1", "--steps", "2048"]


def run_cli(*args: str, timeout: float = TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "scripts/compare.py", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


# -- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--algos", "trpo,ppoo"], "unknown algo 'ppoo' in --algos; did you mean ppo?"),
        (["--algos", ","], "--algos is empty; pass some of: trpo, npg, ppo, acktr, a2c"),
        (["--seeds", "0"], "--seeds must be an integer >= 1, got 0"),
        (["--jobs", "0"], "--jobs must be an integer >= 1, got 0"),
        (["--steps", "-5"], "--steps must be a whole number >= 1 such as 1000000 or 1e6"),
        (["--steps", "lots"], "--steps must be a whole number >= 1"),
        (["--net-arch", "64,,64"], "--net-arch must be hidden layer sizes such as 64,64"),
        (["--hp", "max_kl=0.1"], "is not of the form algo:key=value (e.g. --hp trpo:max_kl"),
        (["--algos", "ppo", "--hp", "trpo:max_kl=0.1"], "which is not in --algos ppo"),
        (["--algos", "trpo", "--hp", "trpo:max_kl=-1"], "--hp for trpo: max_kl must be in"),
        (["--algos", "ppo", "--hp", "ppo:no_such=1"], "unknown hyperparameter 'no_such'"),
        (["--env", "HalfCheeta"], "unknown environment 'HalfCheeta'; did you mean HalfCheetah"),
    ],
)
def test_bad_flags_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    argv = ["--env", "CartPole", "--out", str(tmp_path / "out")]
    code = compare.main([*argv, *args])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1
    assert message in err


def test_missing_or_unwritable_directories_are_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    cases = {
        ("--env", "CartPole", "--out", str(blocker / "x")): "cannot write to --out",
        ("--env", "CartPole"): "pass --out DIR",
        ("--out", str(tmp_path)): "pass --env, e.g. --env HalfCheetah",
        ("--report-only", str(tmp_path)): f"{tmp_path} has no runs",
    }
    for args, message in cases.items():
        assert compare.main(list(args)) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err


def test_the_script_exits_2_with_one_line_on_stderr() -> None:
    result = run_cli("--env", "CartPole", "--algos", "xyz", "--out", "/tmp/unused", timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: unknown algo 'xyz' in --algos (choose from: trpo, npg, ppo, acktr, a2c)"
    ]


# -- the report ----------------------------------------------------------------------------


def _table_row(markdown: str, first: str) -> str:
    return next(line for line in markdown.splitlines() if line.startswith(f"| {first} |"))


def test_report_only_builds_every_figure_and_the_summary(tmp_path: Path) -> None:
    out = write_runs(tmp_path / "cmp")
    assert compare.main(["--report-only", str(out)]) == 0
    report = out / "report"
    md = (report / "report.md").read_text()
    # Hand-computed: bootstrap intervals of three seeds span min..max (each end atom has
    # probability 1/27 > 2.5%); IQM of three values is their mean; 2 of 10 TRPO updates per
    # seed and 1 of 10 ACKTR ones are above the bound; steps/s as written.
    assert _table_row(md, "trpo") == (
        "| trpo | 3 (3) | 64-64 / 64-64 | 110.0 [100.0, 120.0] | 110.0 | 100 | 1,000 "
        "| 20.0% of 30 |"
    )
    assert _table_row(md, "ppo") == (
        "| ppo | 3 (3) | 64-64 / 64-64 | 73.3 [50.0, 90.0] | 73.3 | 25 | 4,000 | — (no bound) |"
    )
    assert _table_row(md, "acktr").endswith(
        "| 200.0 (one seed) | 200.0 | 50 | 2,000 | 10.0% of 10 |"
    )
    html = (report / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(FIGURES)
    assert "<td>trpo</td><td>3 (3)</td>" in html and "http" not in html
    for name in FIGURES:
        assert f"]({name})" in md
        image = matplotlib.image.imread(report / name)
        assert image.shape[1] > 600 and image.shape[0] > 300  # width, height in pixels


def test_report_copes_with_missing_files_and_columns(tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    write_run(out / "runs", "trpo", 0, geometry=False)
    (write_run(out / "runs", "trpo", 1, geometry=False) / "evaluations.csv").unlink()
    ppo = write_run(out / "runs", "ppo", 0, geometry=False)
    (ppo / "progress.csv").write_text("time/total_timesteps,time/iterations\n2000,1\n4000,2\n")
    only_summary = write_run(out / "runs", "ppo", 1, geometry=False)
    for name in ("progress.csv", "evaluations.csv"):
        (only_summary / name).unlink()
    (out / "runs" / "notes").mkdir()  # not a run folder
    assert compare.main(["--report-only", str(out)]) == 0
    md = (out / "report" / "report.md").read_text()
    # trpo-s1's final return: the mean training return of its last 5 of 50 updates,
    # steps/1000 + seed = 92, 94, ..., 100 plus 1.
    assert _table_row(md, "trpo-s1").endswith("| 97.0 | training | — |")
    assert _table_row(md, "trpo").endswith("| not measured |")
    assert "(deterministic policy) for 2 run(s);" in md
    assert "(stochastic training policy) for 1 run(s)." in md
    assert "*Skipped: no run logs geometry/ng_cosine.*" in md
    assert "*Skipped: no K-FAC algorithm (acktr) compared.*" in md
    assert "No rollout/ep_rew_mean for ppo." in md
    assert (out / "report" / "kl_per_update.png").is_file()  # from train/kl
    assert not (out / "report" / "ng_cosine.png").exists()


def test_the_clock_of_a_resumed_run_continues() -> None:
    nan = float("nan")
    got = cumulative_elapsed([1.0, 2.0, nan, 3.0, 0.5, 1.5])
    assert got[[0, 1, 3, 4, 5]].tolist() == [1.0, 2.0, 3.0, 3.5, 4.5]


# -- what each run needs -------------------------------------------------------------------


def _summary(path: Path, status: str, total: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "run_summary.json").write_text(json.dumps({"status": status, "total_timesteps": total}))


def test_plan_skips_resumes_extends_or_starts(tmp_path: Path) -> None:
    spec = RunSpec(algo="ppo", seed=0, logdir=tmp_path / "ppo-s0", args=())
    assert plan(spec, 1000).kind == "fresh"
    _summary(spec.logdir, "completed", 1000)
    assert plan(spec, 1000).kind == "skip"
    (spec.logdir / "final.pt").write_bytes(b"")
    assert plan(spec, 2000).resume == spec.logdir / "final.pt"
    with pytest.raises(ValueError, match="trained to 1000 steps, more than --steps 500; pass"):
        plan(spec, 500)
    _summary(spec.logdir, "interrupted", 1000)
    (spec.logdir / "checkpoint.pt").write_bytes(b"")
    assert plan(spec, 1000).resume == spec.logdir / "checkpoint.pt"


def test_plan_refuses_a_run_trained_with_other_hyperparameters(tmp_path: Path) -> None:
    spec = RunSpec(algo="trpo", seed=0, logdir=tmp_path / "trpo-s0", args=())
    _summary(spec.logdir, "completed", 1000)
    summary = json.loads((spec.logdir / "run_summary.json").read_text())
    summary["hyperparameters"] = {"max_kl": 0.01, "gamma": 0.99}
    (spec.logdir / "run_summary.json").write_text(json.dumps(summary))
    assert plan(spec, 1000, {"max_kl": 0.01, "gamma": 0.99}).kind == "skip"
    with pytest.raises(ValueError, match=r"trained with max_kl=0.01 \(not 0.02\); pass the --hp"):
        plan(spec, 1000, {"max_kl": 0.02, "gamma": 0.99})


# -- real runs -----------------------------------------------------------------------------


def test_a_short_comparison_reports_resumes_and_rebuilds(tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    first = run_cli(*REAL, "--jobs", "2", "--geometry-every", "2", "--out", str(out))
    assert first.returncode == 0, first.stdout + first.stderr
    assert "[2/2] a2c-s0: completed at 2060 steps" in first.stdout
    report = out / "report"
    assert {p.name for p in report.glob("*.png")} == set(FIGURES) - {"kfac_error.png"}
    assert "| ppo | 1 (1) | 64-64 / 64-64 |" in (report / "report.md").read_text()
    progress = out / "runs" / "ppo-s0" / "progress.csv"
    stamp = progress.stat().st_mtime_ns
    again = run_cli(*REAL, "--jobs", "2", "--geometry-every", "2", "--out", str(out))
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count("skipped (already completed)") == 2
    assert progress.stat().st_mtime_ns == stamp
    built = (report / "report.html").stat().st_mtime_ns
    rebuilt = run_cli("--report-only", str(out))
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert (report / "report.html").stat().st_mtime_ns > built


def test_ctrl_c_stops_the_runs_with_a_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    args = ["--env", "CartPole", "--algos", "a2c", "--seeds", "1", "--steps", "1e6"]
    proc = subprocess.Popen(
        [sys.executable, "scripts/compare.py", *args, "--out", str(out)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    progress = out / "runs" / "a2c-s0" / "progress.csv"
    deadline = time.monotonic() + TIMEOUT_S
    while not progress.is_file() and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=TIMEOUT_S)
    assert proc.returncode == 130, stdout + stderr
    assert "a2c-s0: interrupted at" in stdout and "to resume, run the same command" in stdout
    summary = json.loads((out / "runs" / "a2c-s0" / "run_summary.json").read_text())
    assert summary["status"] == "interrupted"
    spec = RunSpec(algo="a2c", seed=0, logdir=out / "runs" / "a2c-s0", args=())
    assert plan(spec, 1_000_000).resume == out / "runs" / "a2c-s0" / "checkpoint.pt"
