"""End-to-end tests of ``scripts/train.py``: outputs, one-line errors, resume and Ctrl-C.

Every test runs the script as a user would, in a subprocess from the repository root, on
Pendulum with a tiny budget. Independent error cases run concurrently to keep the file fast.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from agents import TRPO
from agents.common.checkpoint import save_checkpoint

REPO = Path(__file__).resolve().parents[2]
SCRIPT = "scripts/train.py"
TINY = [
    "--algo",
    "trpo",
    "--env",
    "Pendulum",
    "--n-envs",
    "1",
    "--hp",
    "n_steps=256",
    "--hp",
    "n_critic_updates=1",
    "--hp",
    "cg_iters=3",
    "--hp",
    "normalize=true",
    "--no-progress",
]
TIMEOUT_S = 120
BaseRun = tuple[Path, subprocess.CompletedProcess[str]]


def _start(args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, SCRIPT, *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait(proc: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
    try:
        out, err = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _run_all(commands: dict[str, list[str]]) -> dict[str, subprocess.CompletedProcess[str]]:
    """Run the commands concurrently; their results by name."""
    procs = {name: _start(args) for name, args in commands.items()}
    return {name: _wait(proc) for name, proc in procs.items()}


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _steps(path: Path) -> list[int]:
    return [int(float(row["time/total_timesteps"])) for row in _rows(path)]


def _assert_one_line_error(result: subprocess.CompletedProcess[str], expected: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert expected in lines[0]
    assert "Traceback" not in result.stderr + result.stdout


# -- a short real run --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def base_run(tmp_path_factory: pytest.TempPathFactory) -> BaseRun:
    """512 steps with a checkpoint every 256 and an evaluation every 256."""
    logdir = tmp_path_factory.mktemp("base")
    args = [*TINY, "--steps", "512", "--save-every", "256", "--eval-every", "256"]
    result = _wait(_start([*args, "--eval-episodes", "2", "--logdir", str(logdir)]))
    assert result.returncode == 0, result.stderr
    return logdir, result


def test_short_run_writes_csv_tensorboard_models_and_summary(base_run: BaseRun) -> None:
    logdir, result = base_run

    rows = _rows(logdir / "progress.csv")
    assert _steps(logdir / "progress.csv") == [256, 512]
    assert {"train/value_loss", "rollout/ep_rew_mean", "time/fps"} <= set(rows[0])
    assert all(row["train/value_loss"] for row in rows)

    (event_file,) = logdir.glob("events.out.tfevents.*")
    events = EventAccumulator(str(event_file)).Reload()
    assert [e.step for e in events.Scalars("train/value_loss")] == [256, 512]
    assert [e.value for e in events.Scalars("time/total_timesteps")] == [256.0, 512.0]
    assert [e.step for e in events.Scalars("eval/mean_reward")] == [256, 512]

    evaluations = _rows(logdir / "evaluations.csv")
    assert [int(row["timesteps"]) for row in evaluations] == [256, 512]
    assert [int(row["episodes"]) for row in evaluations] == [2, 2]

    summary = json.loads((logdir / "run_summary.json").read_text())
    assert summary["algo"] == "trpo"
    assert summary["env_id"] == "Pendulum-v1"
    assert (summary["status"], summary["num_timesteps"], summary["seed"]) == ("completed", 512, 0)
    assert summary["final_eval_mean_reward"] == pytest.approx(float(evaluations[-1]["mean_reward"]))
    assert summary["wall_time_s"] > 0
    assert summary["paths"]["final_model"] == str(logdir / "final.pt")

    agent = TRPO.load(logdir / "final.pt")
    assert (agent.num_timesteps, agent.n_updates, agent.config.n_steps) == (512, 2, 256)
    assert str(logdir / "final.pt") in result.stdout
    assert "final eval return: " in result.stdout


# -- bad input: one line on stderr, exit code 2 ------------------------------------------------

ERROR_CASES: dict[str, tuple[list[str], str]] = {
    "unknown algo": (["--algo", "ppo9"], "unknown algo 'ppo9'"),
    "unknown env": (["--env", "Pendulm"], "unknown environment 'Pendulm'; did you mean Pendulum"),
    "unknown hyperparameter": (["--hp", "max_klx=0.1"], "unknown hyperparameter 'max_klx'"),
    "max_kl zero": (["--hp", "max_kl=0"], "max_kl must be in (0.0, inf), got 0.0"),
    "max_kl negative": (["--hp", "target_kl=-0.1"], "max_kl must be in (0.0, inf), got -0.1"),
    "n_steps zero": (["--hp", "n_steps=0"], "n_steps must be an integer >= 1, got 0"),
    "n_steps wrong type": (["--hp", "n_steps=abc"], "n_steps must be an integer, got 'abc'"),
    "hp without equals": (["--hp", "n_steps"], "--hp 'n_steps' is not of the form key=value"),
    "hp empty key": (["--hp", "=3"], "--hp '=3' is not of the form key=value"),
    "bad steps": (
        ["--steps", "lots"],
        "--steps must be a whole number >= 1 such as 1000000 or 1e6, got 'lots'",
    ),
    "fractional steps": (["--steps", "1.5"], "--steps must be a whole number >= 1"),
    "steps without a value": (
        ["--steps"],
        "argument --steps: expected one argument (see scripts/train.py --help)",
    ),
    "unknown flag": (
        ["--frobnicate"],
        "unrecognized arguments: --frobnicate (see scripts/train.py --help)",
    ),
    "misspelt flag": (
        ["--seeds", "3"],
        "unrecognized arguments: --seeds 3; did you mean --seed? (see scripts/train.py --help)",
    ),
    "seed not an int": (["--seed", "x"], "argument --seed: invalid int value: 'x' (see"),
    "unwritable logdir": (["--logdir", "{tmp}/a_file/sub"], "cannot write to logdir"),
    "missing checkpoint": (["--resume", "{tmp}/nope.pt"], "nope.pt does not exist"),
    "corrupt checkpoint": (["--resume", "{tmp}/corrupt.pt"], "is not a readable rl-ig checkpoint"),
    "foreign checkpoint": (["--resume", "{tmp}/foreign.pt"], "is not an rl-ig checkpoint"),
    "other algo checkpoint": (
        ["--resume", "{tmp}/ppo.pt"],
        "holds a 'ppo' agent, not 'trpo'; pass --algo ppo",
    ),
}


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with a plain file, a corrupt, a foreign and a PPO checkpoint."""
    tmp = tmp_path_factory.mktemp("errors")
    (tmp / "a_file").write_text("not a directory")
    (tmp / "corrupt.pt").write_bytes(b"PK\x03\x04 truncated zip")
    torch.save({"weights": torch.zeros(3)}, tmp / "foreign.pt")
    save_checkpoint(tmp / "ppo.pt", {"algo": "ppo", "seed": 0}, {})
    return tmp


def _error_args(case: str, tmp: Path) -> list[str]:
    extra = [arg.format(tmp=tmp) for arg in ERROR_CASES[case][0]]
    logdir = ["--logdir", str(tmp / case.replace(" ", "_"))]
    return [*TINY, "--steps", "512", *logdir, *extra]  # later flags win


@pytest.fixture(scope="module")
def train_script() -> ModuleType:
    """scripts/train.py imported as a module, to call its ``main`` in this process."""
    spec = importlib.util.spec_from_file_location("rl_ig_train_script", REPO / SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _main_in_process(
    module: ModuleType, args: list[str], capsys: pytest.CaptureFixture[str]
) -> subprocess.CompletedProcess[str]:
    """``main(args)`` here (much faster than a new interpreter per case) as a process result."""
    threads = torch.get_num_threads()
    capsys.readouterr()
    try:
        code = module.main(args)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    finally:
        torch.set_num_threads(threads)  # main configures the runtime for its own process
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out, err)


SUBPROCESS_CASES = (
    "unknown algo",
    "n_steps wrong type",
    "unwritable logdir",
    "corrupt checkpoint",
    "unknown flag",
    "bad steps",
)


def test_bad_input_from_the_command_line_is_one_line_error(bad_files: Path) -> None:
    """A few cases end to end, in parallel: exit status and stderr of the real process."""
    results = _run_all({case: _error_args(case, bad_files) for case in SUBPROCESS_CASES})
    for case, result in results.items():
        _assert_one_line_error(result, ERROR_CASES[case][1])


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_bad_input_is_one_line_error_with_exit_code_2(
    train_script: ModuleType, bad_files: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    result = _main_in_process(train_script, _error_args(case, bad_files), capsys)
    _assert_one_line_error(result, ERROR_CASES[case][1])


# -- resume ------------------------------------------------------------------------------------


def test_resume_continues_count_optimizer_and_normalization(
    base_run: BaseRun, tmp_path: Path
) -> None:
    first_dir, _ = base_run
    logdir = tmp_path / "resumed"
    shutil.copytree(first_dir, logdir)
    args = [*TINY, "--logdir", str(logdir), "--resume", str(logdir / "checkpoint.pt")]
    result = _wait(_start([*args, "--steps", "1024"]))

    assert result.returncode == 0, result.stderr
    summary = json.loads((logdir / "run_summary.json").read_text())
    assert (summary["start_timesteps"], summary["num_timesteps"]) == (512, 1024)
    assert summary["resumed_from"] == str(logdir / "checkpoint.pt")
    assert _steps(logdir / "progress.csv") == [256, 512, 768, 1024]
    assert [int(row["timesteps"]) for row in _rows(logdir / "evaluations.csv")][-1] == 1024
    first = torch.load(first_dir / "checkpoint.pt", weights_only=True)["state"]
    resumed = torch.load(logdir / "final.pt", weights_only=True)["state"]
    first_norm, resumed_norm = first["normalization"], resumed["normalization"]
    assert resumed_norm["obs_rms.count"] > first_norm["obs_rms.count"] + 512
    # Adam's step count doubles only if its state was restored rather than started afresh.
    first_adam = first["optimizers"]["critic"]["state"][0]["step"]
    assert resumed["optimizers"]["critic"]["state"][0]["step"] == 2 * first_adam


def _assert_whole_csv(path: Path) -> None:
    """Every line of ``path`` ends and has as many cells as the header."""
    text = path.read_bytes().decode()
    assert text.endswith("\r\n"), text[-80:]
    with path.open(newline="") as f:
        header, *rows = csv.reader(f)
    assert all(len(row) == len(header) for row in rows), text


def test_resume_keeps_the_logs_up_to_the_checkpoint_then_the_new_rows(
    base_run: BaseRun, tmp_path: Path
) -> None:
    """A run that went on past its checkpoint and crashed in the middle of a row: the resumed
    run drops the later rows and the cut line, and its rows follow the checkpoint's."""
    first_dir, _ = base_run
    logdir = tmp_path / "crashed"
    shutil.copytree(first_dir, logdir)
    progress, evaluations = logdir / "progress.csv", logdir / "evaluations.csv"
    before, evals_before = _rows(progress), _rows(evaluations)  # up to 512, the checkpoint
    later = {**before[-1], "time/total_timesteps": "768.0", "train/value_loss": "12345.0"}
    with progress.open("a", newline="") as f:
        csv.DictWriter(f, list(later)).writerow(later)
        f.write("10")  # the row of step 1024, cut in its step: it reads as step 10
    with evaluations.open("a", newline="") as f:
        f.write("768,-1234.5,0.0,200.0,2\r\n1024,-12")
    args = [*TINY, "--steps", "1024", "--logdir", str(logdir)]
    result = _wait(_start([*args, "--resume", str(logdir / "checkpoint.pt")]))

    assert result.returncode == 0, result.stderr
    _assert_whole_csv(progress)
    rows = _rows(progress)
    assert _steps(progress) == [256, 512, 768, 1024]
    assert rows[:2] == before
    assert [row["time/iterations"] for row in rows[2:]] == ["3.0", "4.0"]  # the resumed updates
    assert "12345.0" not in {row["train/value_loss"] for row in rows}
    _assert_whole_csv(evaluations)
    evals = _rows(evaluations)
    assert [int(row["timesteps"]) for row in evals] == [256, 512, 1024]
    assert evals[:2] == evals_before
    assert "-1234.5" not in {row["mean_reward"] for row in evals}


def test_resume_with_a_log_that_cannot_be_continued_is_one_line_error(
    train_script: ModuleType, base_run: BaseRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first_dir, _ = base_run
    logdir = tmp_path / "edited"
    shutil.copytree(first_dir, logdir)
    text = (logdir / "progress.csv").read_bytes().decode()
    (logdir / "progress.csv").write_text(text.replace("256.0,", "n/a,", 1), newline="")
    args = [*TINY, "--steps", "1024", "--logdir", str(logdir)]
    args += ["--resume", str(logdir / "checkpoint.pt")]

    result = _main_in_process(train_script, args, capsys)

    _assert_one_line_error(
        result,
        f"cannot resume {logdir / 'progress.csv'}: line 2 has time/total_timesteps 'n/a', not a "
        "step number; repair that line or move the file away to start a new log",
    )
    assert (logdir / "progress.csv").read_bytes().decode() == text.replace("256.0,", "n/a,", 1)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--env", "MountainCarContinuous"], "environment 'Pendulum-v1', not 'MountainCar"),
        (["--seed", "3"], "trained with seed 0, not 3; pass --seed 0"),
        (["--n-envs", "2"], "trained with n_envs 1, not 2; pass --n-envs 1"),
        (["--hp", "normalize=false"], "trained with normalize [True, True], not [False, False]"),
        (["--hp", "max_kl=0.02"], "trained with max_kl=0.01 (not 0.02)"),
        (["--steps", "512"], "already has 512 steps, not fewer than --steps 512"),
    ],
)
def test_resume_with_other_settings_is_one_line_error(
    train_script: ModuleType,
    base_run: BaseRun,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    logdir, _ = base_run
    args = [*TINY, "--steps", "1024", "--logdir", str(logdir / "unused")]
    args += ["--resume", str(logdir / "checkpoint.pt"), *extra]
    _assert_one_line_error(_main_in_process(train_script, args, capsys), message)


# -- Ctrl-C ------------------------------------------------------------------------------------


def test_ctrl_c_saves_a_checkpoint_and_exits_0(tmp_path: Path) -> None:
    args = [*TINY, "--steps", "1e6", "--save-every", "1000000", "--logdir", str(tmp_path)]
    proc = _start(args)
    progress = tmp_path / "progress.csv"
    deadline = time.monotonic() + TIMEOUT_S
    while not (progress.is_file() and len(progress.read_text().splitlines()) >= 2):
        assert proc.poll() is None and time.monotonic() < deadline, "no update was logged"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    result = _wait(proc)

    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert f"checkpoint saved to {tmp_path / 'checkpoint.pt'}" in result.stdout
    assert f"--resume {tmp_path / 'checkpoint.pt'}" in result.stdout
    agent = TRPO.load(tmp_path / "checkpoint.pt")
    # The run stopped between updates: the checkpoint holds exactly the last logged update.
    assert agent.num_timesteps == _steps(progress)[-1] >= 256
    summary = json.loads((tmp_path / "run_summary.json").read_text())
    assert (summary["status"], summary["num_timesteps"]) == ("interrupted", agent.num_timesteps)
    assert not (tmp_path / "final.pt").exists()


def test_every_algorithm_trains_from_the_command_line(tmp_path: Path) -> None:
    """``--algo X --env Y`` for the other four agents: a short run, its model and its CSV."""
    small = {
        "npg": ["--hp", "n_steps=128", "--hp", "cg_iters=3", "--hp", "n_critic_updates=1"],
        "ppo": ["--hp", "n_steps=128", "--hp", "n_epochs=2"],
        "acktr": ["--hp", "n_steps=32"],
        "a2c": ["--hp", "n_steps=32"],
    }
    commands = {
        algo: [
            *("--algo", algo, "--env", "Pendulum", "--n-envs", "1", "--steps", "256"),
            *hp,
            *("--no-progress", "--eval-episodes", "1", "--logdir", str(tmp_path / algo)),
        ]
        for algo, hp in small.items()
    }
    for algo, result in _run_all(commands).items():
        assert result.returncode == 0, f"{algo}: {result.stderr[-500:]}"
        summary = json.loads((tmp_path / algo / "run_summary.json").read_text())
        assert summary["algo"] == algo
        rows = _rows(tmp_path / algo / "progress.csv")
        assert rows and "train/fisher_norm" in rows[-1] and "train/kl" in rows[-1]
        meta = torch.load(tmp_path / algo / "final.pt", weights_only=True)["meta"]
        assert json.loads(meta)["algo"] == algo


def test_ctrl_c_while_the_logs_open_stops_after_one_update_with_a_checkpoint(
    train_script: ModuleType,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The SIGINT handler is in place before ``progress.csv`` exists, so a Ctrl-C at that
    moment (as from a parent that waits for the file) is a stop request, not lost."""
    from agents.training import TrainingRun

    opened = TrainingRun._open_outputs

    def open_then_interrupt(self: TrainingRun) -> None:
        opened(self)
        signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(TrainingRun, "_open_outputs", open_then_interrupt)
    logdir = tmp_path / "run"
    result = _main_in_process(
        train_script, [*TINY, "--steps", "100000", "--logdir", str(logdir)], capsys
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads((logdir / "run_summary.json").read_text())
    assert summary["status"] == "interrupted" and (logdir / "checkpoint.pt").is_file()
    assert summary["num_timesteps"] < 100000
