"""Time to a target training loss on the CURVES autoencoder (``benchmark.py --curves``).

Every (optimizer, setting) pair of the sweep (:data:`SWEEP`) trains the K-FAC paper's
autoencoder with ``scripts/train_supervised.py`` (same seed, same data, same batches) in its own
process,
``jobs`` at a time; finished runs are kept, so the command resumes. The training loss is
evaluated every ``eval_every`` steps on a fixed subset of the training set, and the time to
target counts training steps only (forward, backward, optimizer step), not evaluations. Each
optimizer is reported at its best setting (fewest steps to the target, then least time).
"""

from __future__ import annotations

import csv
import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from benchmark_summary import save_report


@dataclass(frozen=True)
class Point:
    """One setting of a sweep: a learning rate and hyperparameters on top of the task's."""

    lr: float
    hp: tuple[tuple[str, float], ...] = ()

    @property
    def name(self) -> str:
        """The run directory's suffix, e.g. ``lr0.001`` or ``lr1-kl_clip0.01``."""
        return "-".join([f"lr{self.lr:g}", *(f"{k}{v:g}" for k, v in self.hp)])

    @property
    def label(self) -> str:
        return ", ".join([f"lr {self.lr:g}", *(f"{k} {v:g}" for k, v in self.hp)])


def _rates(*lrs: float) -> tuple[Point, ...]:
    return tuple(Point(lr) for lr in lrs)


SWEEP: dict[str, tuple[Point, ...]] = {
    "kfac": tuple(Point(1.0, (("kl_clip", c),)) for c in (0.003, 0.01, 0.03)),
    "shampoo": _rates(1e-3, 3e-3, 1e-2),
    "adam": _rates(1e-3, 3e-3, 1e-2),
    "sgd": _rates(3e-3, 1e-2, 3e-2),
}
"""The settings tried per optimizer (SGD with momentum 0.9; Shampoo's lr is its grafted
Adam's), chosen so that each one's best lies inside its sweep. K-FAC's step length is set by its
KL clip, which binds on every step here: the clipped step ``lr·ν·Δ`` does not depend on ``lr``
then, so its sweep is over ``kl_clip``."""

LABELS = {"kfac": "K-FAC", "shampoo": "Shampoo", "adam": "Adam", "sgd": "SGD-momentum"}
COLOURS = {"kfac": "tab:red", "shampoo": "tab:purple", "adam": "tab:blue", "sgd": "tab:gray"}
SCRIPT = Path(__file__).resolve().parent / "train_supervised.py"


@dataclass(frozen=True)
class Run:
    """One finished run of the sweep, read back from its logdir."""

    optim: str
    point: Point
    evals: list[tuple[int, float, float]]  # (step, train seconds, training loss)
    ms_per_step: float

    def to_target(self, target: float) -> tuple[int, float] | None:
        """(steps, seconds) at the first evaluation with training loss <= ``target``."""
        for step, seconds, loss in self.evals:
            if loss <= target:
                return step, seconds
        return None

    @property
    def final_loss(self) -> float:
        return self.evals[-1][2]


def logdir(out: Path, optim: str, point: Point) -> Path:
    return out / f"{optim}-{point.name}"


def _finished(path: Path, steps: int) -> bool:
    summary = path / "run_summary.json"
    if not summary.exists():
        return False
    data = json.loads(summary.read_text())
    return data.get("status") == "completed" and int(data.get("step", 0)) >= steps


def train_command(optim: str, point: Point, args: dict, path: Path) -> list[str]:
    """The ``train_supervised.py`` command of one run into ``path`` (resuming its checkpoint)."""
    cmd = [sys.executable, str(SCRIPT), "--task", "curves", "--optim", optim]
    cmd += ["--lr", f"{point.lr:g}", *(f"--hp={k}={v:g}" for k, v in point.hp)]
    cmd += ["--steps", str(args["steps"]), "--eval-every", str(args["eval_every"])]
    cmd += ["--batch-size", str(args["batch_size"]), "--seed", "0", "--no-progress"]
    cmd += ["--threads", str(args["threads"]), "--save-every", "200"]
    if (path / "checkpoint.pt").exists():
        return [*cmd, "--resume", str(path / "checkpoint.pt")]
    return [*cmd, "--logdir", str(path)]


def run_sweep(out: Path, optims: list[str], args: dict, jobs: int) -> None:
    """Launch every unfinished (optimizer, setting) run, ``jobs`` processes at a time."""
    pending = [
        (o, point)
        for o in optims
        for point in SWEEP[o]
        if not _finished(logdir(out, o, point), args["steps"])
    ]
    running: list[subprocess.Popen] = []
    for optim, point in pending:
        while len(running) >= jobs:
            running = [p for p in running if p.poll() is None]
            time.sleep(2)
        path = logdir(out, optim, point)
        print(f"start {optim} {point.label}", flush=True)
        running.append(subprocess.Popen(train_command(optim, point, args, path)))
    for p in running:
        p.wait()


def read_run(out: Path, optim: str, point: Point) -> Run | None:
    """The run's evaluations and median step time, or None if it has no evaluations."""
    path = logdir(out, optim, point)
    evals_csv, progress_csv = path / "evaluations.csv", path / "progress.csv"
    if not (evals_csv.exists() and progress_csv.exists()):
        return None
    with evals_csv.open() as f:
        evals = [
            (int(r["step"]), float(r["time/train_s"]), float(r["eval/train_loss"]))
            for r in csv.DictReader(f)
        ]
    with progress_csv.open() as f:
        steps = [float(r["time/step_s"]) for r in csv.DictReader(f)]
    if not evals or not steps:
        return None
    return Run(optim, point, evals, 1e3 * statistics.median(steps))


def best_run(runs: list[Run], target: float) -> Run:
    """Fewest steps to ``target``, then least time; runs that never reach it come last (by
    their final loss)."""

    def key(run: Run) -> tuple[float, float, float]:
        reached = run.to_target(target)
        if reached is None:
            return (float("inf"), float("inf"), run.final_loss)
        return (reached[0], reached[1], run.final_loss)

    return min(runs, key=key)


def _fmt(reached: tuple[int, float] | None) -> tuple[str, str]:
    return ("not reached", "-") if reached is None else (f"{reached[0]:,}", f"{reached[1]:.0f}")


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None else f"{a / b:.2f}"


def report_lines(best: dict[str, Run], sweep: dict[str, list[Run]], target: float) -> list[str]:
    lines = [
        f"CURVES autoencoder: steps and seconds to training loss <= {target:g}",
        "",
        "| optimizer | best setting | steps to target | seconds to target | ms per step | "
        "final loss |",
        "|---|---|---|---|---|---|",
    ]
    for optim, run in best.items():
        steps, secs = _fmt(run.to_target(target))
        lines.append(
            f"| {LABELS[optim]} | {run.point.label} | {steps} | {secs} | {run.ms_per_step:.0f} | "
            f"{run.final_loss:.2f} |"
        )
    lines += ["", "Every run of the sweep (steps to target):", ""]
    for optim, runs in sweep.items():
        cells = [f"{r.point.label}: {_fmt(r.to_target(target))[0]}" for r in runs]
        lines.append(f"- {LABELS[optim]}: {'; '.join(cells)}")
    if "adam" in best:
        adam = best["adam"].to_target(target)
        lines.append("")
        for optim in ("kfac", "shampoo"):
            if optim not in best:
                continue
            mine = best[optim].to_target(target)
            ratio_steps = _ratio(mine and mine[0], adam and adam[0])
            ratio_time = _ratio(mine and mine[1], adam and adam[1])
            ratio_step_time = best[optim].ms_per_step / best["adam"].ms_per_step
            lines.append(
                f"- {LABELS[optim]} / Adam: steps {ratio_steps}, seconds {ratio_time}, "
                f"time per step {ratio_step_time:.2f}"
            )
    return lines


def plot(best: dict[str, Run], target: float, png: Path, table: Path, lines: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_time, ax_steps) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    for optim, run in best.items():
        label = f"{LABELS[optim]} ({run.point.label})"
        steps = [e[0] for e in run.evals]
        secs = [e[1] for e in run.evals]
        loss = [e[2] for e in run.evals]
        ax_time.plot(secs, loss, color=COLOURS[optim], label=label)
        ax_steps.plot(steps, loss, color=COLOURS[optim], label=label)
    for ax, xlabel in ((ax_time, "training time (s)"), (ax_steps, "optimizer steps")):
        ax.axhline(target, color="black", linestyle=":", linewidth=1, label=f"target {target:g}")
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("training loss (BCE summed over pixels)")
        ax.grid(alpha=0.3)
    ax_steps.legend(fontsize=8)
    fig.suptitle("CURVES autoencoder: training loss, best setting of each optimizer")
    save_report(fig, lines, png, table)


def curves_benchmark(out: Path, optims: list[str], target: float, args: dict, jobs: int) -> None:
    """Run (or resume) the sweep, then write ``summary.md`` and ``curves.png`` into ``out``."""
    unknown = [o for o in optims if o not in SWEEP]
    if unknown:
        raise ValueError(f"--optims takes {', '.join(SWEEP)}, got {', '.join(unknown)}")
    out.mkdir(parents=True, exist_ok=True)
    run_sweep(out, optims, args, jobs)
    sweep = {o: [r for point in SWEEP[o] if (r := read_run(out, o, point))] for o in optims}
    best = {o: best_run(runs, target) for o, runs in sweep.items() if runs}
    lines = report_lines(best, sweep, target)
    plot(best, target, out / "curves.png", out / "summary.md", lines)
