"""End-to-end tests of ``scripts/train_supervised.py``: outputs, one-line errors, Ctrl-C and
resume, and a two-process ``torchrun`` run against a one-process run.

Runs are tiny (digits, a few dozen steps). Independent processes run concurrently, and most
error cases call ``main`` in this process, to keep the file fast.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest
import torch
import torch.distributed as dist
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rl_ig.supervised import SupervisedRun, TrainConfig, make_task

REPO = Path(__file__).resolve().parents[2]
SCRIPT = "scripts/train_supervised.py"
TINY = ["--task", "digits-mlp", "--batch-size", "32", "--no-progress"]
TIMEOUT_S = 120
BaseRun = tuple[Path, subprocess.CompletedProcess[str]]


def _start(args: list[str], launcher: list[str] | None = None) -> subprocess.Popen[str]:
    command = [*(launcher or [sys.executable]), SCRIPT, *args]
    return subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _wait(proc: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
    try:
        out, err = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _steps(path: Path) -> list[int]:
    return [int(row["step"]) for row in _rows(path)]


def _model(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["state"]["model"]


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
    """K-FAC, 30 steps, an evaluation and a checkpoint every 10."""
    logdir = tmp_path_factory.mktemp("base")
    args = [*TINY, "--optim", "kfac", "--steps", "30", "--eval-every", "10", "--save-every", "10"]
    result = _wait(_start([*args, "--logdir", str(logdir)]))
    assert result.returncode == 0, result.stderr
    return logdir, result


def test_short_run_writes_csv_tensorboard_checkpoints_and_summary(base_run: BaseRun) -> None:
    logdir, result = base_run

    progress = _rows(logdir / "progress.csv")
    assert _steps(logdir / "progress.csv") == list(range(1, 31))
    assert {"train/loss", "time/step_s", "time/train_s", "time/steps_per_s"} <= set(progress[0])
    assert {"optim/kl_clip_scale", "optim/predicted_kl", "optim/damping"} <= set(progress[0])
    train_s = [float(row["time/train_s"]) for row in progress]
    steps_s = [float(row["time/step_s"]) for row in progress]
    assert train_s == pytest.approx(torch.tensor(steps_s, dtype=torch.float64).cumsum(0).tolist())
    evaluations = _rows(logdir / "evaluations.csv")
    assert [int(row["step"]) for row in evaluations] == [0, 10, 20, 30]
    assert float(evaluations[0]["eval/test_accuracy"]) < 0.3  # an untrained net: near chance
    assert float(evaluations[-1]["eval/test_accuracy"]) > 0.8

    (event_file,) = logdir.glob("events.out.tfevents.*")
    events = EventAccumulator(str(event_file)).Reload()
    assert [e.step for e in events.Scalars("train/loss")] == list(range(1, 31))
    assert [e.step for e in events.Scalars("eval/test_accuracy")] == [0, 10, 20, 30]
    assert len(events.Scalars("time/steps_per_s")) == 30
    assert len(events.Scalars("optim/kl_clip_scale")) == 30

    checkpoint = torch.load(logdir / "checkpoint.pt", weights_only=True)
    assert json.loads(checkpoint["meta"])["step"] == 30
    assert set(checkpoint["state"]) == {
        "model",
        "optimizer",
        "sampler",
        "torch_rng",
        "target_sampler",  # K-FAC's sampled Fisher (the default) draws its targets from it
    }
    summary = json.loads((logdir / "run_summary.json").read_text())
    assert (summary["task"], summary["optim"], summary["status"]) == (
        "digits-mlp",
        "kfac",
        "completed",
    )
    assert (summary["step"], summary["batch_size"], summary["world_size"]) == (30, 32, 1)
    assert summary["lr"] == 0.1
    assert summary["hp"] == {"damping": 0.01, "kl_clip": 0.001, "fisher": "sampled"}
    assert summary["final_eval"]["eval/test_loss"] == pytest.approx(
        float(evaluations[-1]["eval/test_loss"])
    )
    assert str(logdir / "final.pt") in result.stdout
    assert "final eval (step 30): " in result.stdout


# -- bad input: one line on stderr, exit code 2 ------------------------------------------------

ERROR_CASES: dict[str, tuple[list[str], str]] = {
    "unknown task": (["--task", "curvs"], "unknown task 'curvs'; did you mean curves?"),
    "unknown optim": (["--optim", "kfca"], "unknown optim 'kfca'; did you mean kfac?"),
    "lr zero": (["--lr", "0"], "--lr must be a number > 0 such as 1e-3, got '0'"),
    "lr negative": (["--lr", "-0.001"], "--lr must be a number > 0"),
    "lr not a number": (["--lr", "fast"], "--lr must be a number > 0"),
    "steps fractional": (["--steps", "1.5"], "--steps must be a whole number >= 1"),
    "steps word": (["--steps", "lots"], "--steps must be a whole number >= 1"),
    "batch not an int": (["--batch-size", "x"], "argument --batch-size: invalid int value: 'x'"),
    "batch too large": (["--batch-size", "5000"], "batch size 5000 must be between 1 and the 1438"),
    "missing task": (["--task"], "argument --task: expected one argument"),
    "hp without equals": (["--hp", "damping"], "--hp 'damping' is not of the form key=value"),
    "hp bad yaml": (["--hp", "betas=[0.9"], "--hp betas: value '[0.9' is not valid YAML"),
    "hp unknown": (["--hp", "dampng=1"], "unknown hyperparameter 'dampng' for optim kfac"),
    "hp wrong type": (["--hp", "damping=big"], "hyperparameter damping must be a number"),
    "kfac damping zero": (["--hp", "damping=0"], "damping must be a finite number > 0, got 0"),
    "fisher for adam": (
        ["--optim", "adam", "--hp", "fisher=sampled"],
        "hyperparameter fisher applies to optim kfac only, not adam",
    ),
    "fisher unknown": (
        ["--hp", "fisher=true"],
        "hyperparameter fisher must be 'sampled' or 'empirical', got True",
    ),
    "kfac capture": (["--hp", "capture=auto"], "hyperparameter capture of optim kfac follows"),
    "shampoo epsilon zero": (
        ["--optim", "shampoo", "--hp", "epsilon=0"],
        "epsilon must be a finite number > 0, got 0",
    ),
    "adam beta out of range": (
        ["--optim", "adam", "--hp", "betas=[1.5, 0.9]"],
        "optim adam with betas=[1.5, 0.9]: Invalid beta parameter at index 0: 1.5",
    ),
    "bad device": (["--device", "tpu"], "--device must be cpu or cuda[:N], got 'tpu'"),
    "threads zero": (["--threads", "0"], "--threads must be an integer >= 1, got 0"),
    "unwritable logdir": (["--logdir", "{tmp}/a_file/sub"], "cannot write to logdir"),
    "missing checkpoint": (["--resume", "{tmp}/nope.pt"], "nope.pt does not exist"),
    "corrupt checkpoint": (["--resume", "{tmp}/corrupt.pt"], "is not a readable rl-ig checkpoint"),
    "foreign checkpoint": (["--resume", "{tmp}/foreign.pt"], "is not an rl-ig checkpoint"),
    "agent checkpoint": (["--resume", "{tmp}/ppo.pt"], "holds a 'ppo' agent, not a supervised run"),
}
if not torch.cuda.is_available():
    ERROR_CASES["no cuda"] = (["--device", "cuda"], "no CUDA device is available")


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with a plain file, a corrupt, a foreign and an RL agent's checkpoint."""
    tmp = tmp_path_factory.mktemp("errors")
    (tmp / "a_file").write_text("not a directory")
    (tmp / "corrupt.pt").write_bytes(b"PK\x03\x04 truncated zip")
    torch.save({"weights": torch.zeros(3)}, tmp / "foreign.pt")
    meta = json.dumps({"algo": "ppo", "seed": 0})
    torch.save(
        {"format": "rl-ig-checkpoint", "version": 1, "meta": meta, "state": {}}, tmp / "ppo.pt"
    )
    return tmp


def _error_args(case: str, tmp: Path) -> list[str]:
    extra = [arg.format(tmp=tmp) for arg in ERROR_CASES[case][0]]
    logdir = ["--logdir", str(tmp / case.replace(" ", "_"))]
    return [*TINY, "--optim", "kfac", "--steps", "20", *logdir, *extra]  # later flags win


@pytest.fixture(scope="module")
def script() -> ModuleType:
    """scripts/train_supervised.py imported as a module, to call its ``main`` in this process."""
    spec = importlib.util.spec_from_file_location("rl_ig_train_supervised", REPO / SCRIPT)
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
        torch.set_num_threads(threads)
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out, err)


def test_bad_input_from_the_command_line_is_one_line_error(bad_files: Path) -> None:
    """A few cases end to end, in parallel: exit status and stderr of the real process."""
    cases = ("shampoo epsilon zero", "fisher for adam", "foreign checkpoint")
    procs = {case: _start(_error_args(case, bad_files)) for case in cases}
    for case, proc in procs.items():
        _assert_one_line_error(_wait(proc), ERROR_CASES[case][1])


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_bad_input_is_one_line_error_with_exit_code_2(
    script: ModuleType, bad_files: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    result = _main_in_process(script, _error_args(case, bad_files), capsys)
    _assert_one_line_error(result, ERROR_CASES[case][1])


def test_batch_not_divisible_by_the_world_size_is_one_line_error(
    script: ModuleType,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in {"RANK": "0", "WORLD_SIZE": "3", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(name, value)
    args = [*TINY, "--optim", "adam", "--logdir", str(tmp_path)]
    result = _main_in_process(script, args, capsys)
    message = "batch size 32 is not divisible by the 3 processes; pass a --batch-size that is a"
    _assert_one_line_error(result, f"{message} multiple of 3")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--optim", "adam"], "trained with optim 'kfac', not 'adam'; pass --optim kfac"),
        (["--batch-size", "64"], "trained with batch_size 32, not 64; pass --batch-size 32"),
        (
            ["--hp", "damping=0.1"],
            "trained with hyperparameters {'damping': 0.01, 'kl_clip': 0.001, 'fisher': "
            "'sampled'}, not {'damping': 0.1, 'kl_clip': 0.001, 'fisher': 'sampled'}",
        ),
        (["--data-seed", "1"], "trained on digits-mlp data {'data_seed': 0"),
        (
            ["--steps", "30"],
            "already has 30 steps, not fewer than --steps 30; pass a larger --steps",
        ),
    ],
)
def test_resume_with_other_settings_is_one_line_error(
    script: ModuleType,
    base_run: BaseRun,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    logdir, _ = base_run
    args = [*TINY, "--optim", "kfac", "--steps", "40", "--logdir", str(logdir / "unused")]
    args += ["--resume", str(logdir / "checkpoint.pt"), *extra]
    _assert_one_line_error(_main_in_process(script, args, capsys), message)


# -- Ctrl-C and resume -------------------------------------------------------------------------


def test_ctrl_c_saves_a_checkpoint_exits_0_and_the_run_resumes(tmp_path: Path) -> None:
    args = [*TINY, "--optim", "adam", "--steps", "1e6", "--save-every", "0"]
    proc = _start([*args, "--logdir", str(tmp_path)])
    progress = tmp_path / "progress.csv"
    deadline = time.monotonic() + TIMEOUT_S
    while not (progress.is_file() and len(progress.read_text().splitlines()) >= 3):
        assert proc.poll() is None and time.monotonic() < deadline, "no step was logged"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    result = _wait(proc)

    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert f"checkpoint saved to {tmp_path / 'checkpoint.pt'}" in result.stdout
    assert f"--resume {tmp_path / 'checkpoint.pt'}" in result.stdout
    meta = json.loads(torch.load(tmp_path / "checkpoint.pt", weights_only=True)["meta"])
    stopped = meta["step"]
    assert stopped == _steps(progress)[-1] >= 2  # stopped between steps: nothing half done
    summary = json.loads((tmp_path / "run_summary.json").read_text())
    assert (summary["status"], summary["step"]) == ("interrupted", stopped)
    assert not (tmp_path / "final.pt").exists()

    # Without --logdir, a resumed run writes next to its checkpoint and continues its logs.
    resumed = _wait(
        _start(
            [*args[:-4], "--steps", str(stopped + 5), "--resume", str(tmp_path / "checkpoint.pt")]
        )
    )
    assert resumed.returncode == 0, resumed.stderr
    assert _steps(progress) == list(range(1, stopped + 6))
    summary = json.loads((tmp_path / "run_summary.json").read_text())
    assert (summary["status"], summary["start_step"], summary["step"]) == (
        "completed",
        stopped,
        stopped + 5,
    )


# -- data parallel -----------------------------------------------------------------------------


@pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()),
    reason="needs torch.distributed with gloo",
)
@pytest.mark.parametrize(
    ("optim", "lr", "hp"),
    [
        ("adam", 1e-3, {}),
        # K-FAC with the sampled Fisher: a second backward per step that DDP must not reduce,
        # and targets that the two ranks must draw as one process does.
        ("kfac", 0.1, {"damping": 0.01, "kl_clip": 0.001, "fisher": "sampled"}),
        # Factors from every 4th example: each rank's strided rows are one process's.
        ("kfac", 0.1, {"damping": 0.01, "kl_clip": 0.001, "fisher_subsample": 4}),
    ],
    ids=["adam", "kfac-sampled", "kfac-subsampled"],
)
def test_two_processes_under_torchrun_match_one_process_with_the_same_global_batch(
    tmp_path: Path, optim: str, lr: float, hp: dict[str, object]
) -> None:
    args = [
        *("--task", "digits-mlp", "--optim", optim, "--lr", str(lr), "--batch-size", "64"),
        *("--steps", "20", "--eval-every", "10", "--save-every", "0", "--no-progress"),
        *(arg for key, value in hp.items() for arg in ("--hp", f"{key}={value}")),
    ]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    two = _start([*args, "--logdir", str(tmp_path / "two")], launcher=torchrun)
    # The one-process reference runs here meanwhile (cheaper than another interpreter).
    config = TrainConfig(
        optim=optim, lr=lr, hp=hp, steps=20, batch_size=64, logdir=tmp_path / "one", progress=False
    )
    one = SupervisedRun(make_task("digits-mlp"), config).run()
    result = _wait(two)

    output = f"stdout:\n{result.stdout[-2000:]}\nstderr:\n{result.stderr[-2000:]}"
    assert result.returncode == 0, output
    assert result.stdout.count("final model:") == 1, output  # only rank 0 reports
    assert len(list((tmp_path / "two").glob("events.out.tfevents.*"))) == 1
    assert _steps(tmp_path / "two" / "progress.csv") == list(range(1, 21))
    evaluations = _rows(tmp_path / "two" / "evaluations.csv")
    diffs = [float(row["dist/max_param_diff"]) for row in evaluations]
    assert diffs == [0.0, 0.0, 0.0], evaluations
    summary = json.loads((tmp_path / "two" / "run_summary.json").read_text())
    assert (summary["world_size"], summary["status"], summary["step"]) == (2, "completed", 20)

    two_params, one_params = _model(tmp_path / "two" / "final.pt"), _model(one.paths.final_model)
    assert two_params.keys() == one_params.keys()
    for name, value in one_params.items():
        torch.testing.assert_close(
            two_params[name], value, rtol=1e-5, atol=1e-6, msg=lambda m, name=name: f"{name}: {m}"
        )
