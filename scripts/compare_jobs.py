"""Running the (algorithm, seed) grid of ``scripts/compare.py`` as ``scripts/train.py``
subprocesses, ``jobs`` at a time, each logging to ``OUT/runs/<algo>-s<seed>/train.log``.

What each run folder needs (:func:`plan`): nothing when its ``run_summary.json`` says it was
completed to the requested steps; ``--resume final.pt`` when it was completed to fewer;
``--resume checkpoint.pt`` when it stopped early with a checkpoint (Ctrl-C, a crash after a
``--save-every`` checkpoint); a fresh start otherwise.

Children run in their own sessions, so a Ctrl-C in the terminal reaches only this process,
which forwards exactly one SIGINT to each child (stop after the current update and save a
checkpoint) and starts no new run; a second Ctrl-C forwards a second one (abort at once).
"""

from __future__ import annotations

import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compare_runs import read_json

TRAIN_SCRIPT = Path(__file__).resolve().parent / "train.py"
POLL_S = 0.2
LOG_NAME = "train.log"


@dataclass(frozen=True)
class RunSpec:
    """One training run of the grid.

    Attributes:
        algo: the algorithm.
        seed: the seed.
        logdir: its folder, ``OUT/runs/<algo>-s<seed>``.
        args: the ``scripts/train.py`` arguments, without ``--resume``.
    """

    algo: str
    seed: int
    logdir: Path
    args: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.logdir.name


@dataclass(frozen=True)
class Action:
    """What a run needs: ``kind`` is ``skip``, ``resume`` or ``fresh``; ``resume`` names the
    checkpoint to continue from."""

    kind: str
    resume: Path | None = None
    reason: str = ""


def check_same_hyperparameters(
    logdir: Path, summary: Mapping[str, Any], wanted: Mapping[str, Any] | None
) -> None:
    """Raise a one-line ``ValueError`` when a run's recorded hyperparameters differ from
    ``wanted`` (nothing to compare when either is missing)."""
    recorded = summary.get("hyperparameters")
    if not isinstance(recorded, dict) or wanted is None:
        return
    differ = [
        f"{k}={v!r} (not {wanted.get(k)!r})" for k, v in recorded.items() if wanted.get(k) != v
    ]
    if differ:
        raise ValueError(
            f"run {logdir} was trained with {', '.join(differ[:3])}; pass the --hp and "
            "--net-arch it was started with, or another --out"
        )


def plan(spec: RunSpec, steps: int, hyperparameters: Mapping[str, Any] | None = None) -> Action:
    """What ``spec``'s folder needs to reach ``steps``; see the module docstring.

    Args:
        spec: the run.
        steps: the steps it should reach.
        hyperparameters: its agent configuration as ``run_summary.json`` records it; a run
            recorded with others is refused.

    Raises:
        ValueError: for a run already trained past ``steps`` or with other hyperparameters
            (one line naming the fix).
    """
    summary = read_json(spec.logdir / "run_summary.json")
    check_same_hyperparameters(spec.logdir, summary, hyperparameters)
    done = summary.get("status") == "completed"
    total = summary.get("total_timesteps")
    if done and total == steps:
        return Action("skip", reason="already completed")
    if done and isinstance(total, int) and total > steps:
        raise ValueError(
            f"run {spec.logdir} was trained to {total} steps, more than --steps {steps}; "
            f"pass --steps {total} or another --out"
        )
    final, checkpoint = spec.logdir / "final.pt", spec.logdir / "checkpoint.pt"
    if done and final.is_file():
        return Action("resume", final, f"extending from {total} steps")
    if checkpoint.is_file() and summary.get("status") != "completed":
        return Action("resume", checkpoint, "resuming from its checkpoint")
    return Action("fresh")


@dataclass(frozen=True)
class Outcome:
    """How a run ended: ``status`` from its summary (``failed`` when the child exited with an
    error before writing one), the exit code and a line to print."""

    spec: RunSpec
    status: str
    returncode: int
    message: str


def _command(spec: RunSpec, action: Action) -> list[str]:
    resume = ["--resume", str(action.resume)] if action.resume else []
    return [sys.executable, str(TRAIN_SCRIPT), *spec.args, *resume]


def _last_error(log: Path) -> str:
    """The child's ``error:`` line (or its last line) from its log."""
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines()]
    except OSError:
        return ""
    lines = [line for line in lines if line]
    errors = [line for line in lines if line.startswith("error:")]
    return (errors or lines or [""])[-1]


def describe(spec: RunSpec, returncode: int, seconds: float) -> Outcome:
    """The outcome of a finished child, read from its summary and log."""
    summary = read_json(spec.logdir / "run_summary.json")
    status = str(summary.get("status", "failed")) if returncode in (0, 130) else "failed"
    if status == "failed":
        why = _last_error(spec.logdir / LOG_NAME)
        return Outcome(spec, status, returncode, f"failed (exit {returncode}): {why}")
    steps = summary.get("num_timesteps", "?")
    final = summary.get("final_eval_mean_reward")
    ret = f", final eval return {final:.1f}" if isinstance(final, (int, float)) else ""
    return Outcome(spec, status, returncode, f"{status} at {steps} steps in {seconds:.0f} s{ret}")


class Pool:
    """At most ``jobs`` children at a time; see the module docstring for Ctrl-C.

    Args:
        jobs: children at once, >= 1.
        report: called with ``(index, total, outcome)`` as each run finishes or is skipped.
    """

    def __init__(self, jobs: int, report: Callable[[int, int, Outcome], None]):
        self.jobs = jobs
        self.report = report
        self.interrupts = 0
        self.running: dict[subprocess.Popen[bytes], tuple[RunSpec, float]] = {}
        self.outcomes: list[Outcome] = []

    def run(self, todo: list[tuple[RunSpec, Action]]) -> list[Outcome]:
        """Run (or skip) every ``(spec, action)``; returns the outcomes in finishing order."""
        self.total = len(todo)
        queue = list(todo)
        while queue or self.running:
            try:
                while queue and len(self.running) < self.jobs and not self.interrupts:
                    self._start(*queue.pop(0))
                self._reap()
                time.sleep(POLL_S)
            except KeyboardInterrupt:
                self._interrupt()
                queue.clear()
        return self.outcomes

    def _finish(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)
        self.report(len(self.outcomes), self.total, outcome)

    def _start(self, spec: RunSpec, action: Action) -> None:
        if action.kind == "skip":
            self._finish(Outcome(spec, "completed", 0, f"skipped ({action.reason})"))
            return
        spec.logdir.mkdir(parents=True, exist_ok=True)
        with (spec.logdir / LOG_NAME).open("ab") as log:
            note = f"\n$ {shlex.join(_command(spec, action))}\n"
            log.write(note.encode())
            log.flush()
            child = subprocess.Popen(
                _command(spec, action),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # a terminal Ctrl-C reaches us only; we forward it
            )
        self.running[child] = (spec, time.monotonic())

    def _reap(self) -> None:
        for child, (spec, started) in list(self.running.items()):
            code = child.poll()
            if code is not None:
                del self.running[child]
                self._finish(describe(spec, code, time.monotonic() - started))

    def _interrupt(self) -> None:
        """Forward one SIGINT to every child (the first: save and stop; the second: abort)."""
        self.interrupts += 1
        what = "stopping runs after their current update" if self.interrupts == 1 else "aborting"
        print(f"\nCtrl-C: {what} (Ctrl-C again to abort without saving)", file=sys.stderr)
        for child in self.running:
            if child.poll() is None:
                child.send_signal(signal.SIGINT)
