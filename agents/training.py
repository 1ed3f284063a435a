"""The training loop behind ``scripts/train.py``: logging, evaluation, checkpoints, Ctrl-C.

:class:`TrainingRun` drives ``agent.learn`` with a callback that, after every update,

1. logs the update's dict (SB3 tag names: ``train/``, ``rollout/``, ``time/``, and rl-ig's
   ``geometry/``) to TensorBoard at ``x = agent.num_timesteps`` and appends it as a row of
   ``progress.csv``; an update whose step geometry was measured (every ``geometry_every``-th,
   see :mod:`agents.common.geometry`) also gets a row of ``geometry.csv``: the step, iteration
   and time columns and every ``geometry/`` key;
2. advances a ``tqdm`` bar over timesteps;
3. every ``save_every`` steps writes ``checkpoint.pt`` (atomically);
4. every ``eval_every`` steps evaluates the deterministic policy on a separate environment whose
   normalisation statistics are copied from the training one and frozen.

A resumed run (``continue_logs``) keeps the rows of ``progress.csv``, ``geometry.csv`` and
``evaluations.csv``, and the TensorBoard events, up to the agent's step count and drops those
written after its checkpoint, so the step column stays increasing; a last CSV line cut short by a
crash is never glued to the next row.

At the end it writes ``final.pt``, evaluates once more and writes ``run_summary.json``. The first
Ctrl-C asks the run to stop after the current update, which is then saved to ``checkpoint.pt``;
a second Ctrl-C aborts at once without saving (the update it interrupts may be half applied).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.vec_env import VecEnv
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

import envs
from agents.common.agent import OnPolicyAgent, env_description
from agents.common.geometry import is_measured
from rl_ig.run import CsvLog, RunPaths, announce_stop, stop_on_sigint, write_json

EVAL_SEED_OFFSET = 1000
"""The evaluation environment is seeded with the agent's seed plus this."""
PROGRESS_STEP = "time/total_timesteps"
"""The step column of ``progress.csv``."""
EVAL_STEP = "timesteps"
"""The step column of ``evaluations.csv``."""
GEOMETRY_PREFIX = "geometry/"
"""The keys of an update's dict that ``geometry.csv`` holds (besides the step columns)."""

_STEP_KEYS = (PROGRESS_STEP, "time/iterations", "time/time_elapsed")
"""The columns that ``geometry.csv`` shares with ``progress.csv``, first in each row."""

EnvFactory = Callable[[int, int], VecEnv]
"""``make_env(n_envs, seed)``: builds an environment with the training run's settings."""


@dataclass(kw_only=True, frozen=True)
class TrainingConfig:
    """What a :class:`TrainingRun` does besides calling ``learn``.

    Attributes:
        logdir: directory for every output (see :class:`~rl_ig.run.outputs.RunPaths`).
        total_timesteps: the step count to reach, counting steps a resumed agent already has.
        save_every: write ``checkpoint.pt`` every this many steps; 0: only on Ctrl-C.
        eval_every: evaluate every this many steps; 0: only at the end.
        eval_episodes: episodes per evaluation, >= 1.
        progress: show a progress bar (when stderr is a terminal).
        continue_logs: continue the logdir's CSV files and TensorBoard events up to the agent's
            step count (a resumed run; what was logged after its checkpoint is dropped) instead
            of replacing them.
        resumed_from: the checkpoint a resumed run started from, recorded in the summary.
    """

    logdir: Path
    total_timesteps: int
    save_every: int = 100_000
    eval_every: int = 0
    eval_episodes: int = 5
    progress: bool = True
    continue_logs: bool = False
    resumed_from: Path | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "logdir", Path(self.logdir))
        for name, low in (
            ("total_timesteps", 1),
            ("save_every", 0),
            ("eval_every", 0),
            ("eval_episodes", 1),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


@dataclass(frozen=True)
class EvalResult:
    """Returns of the deterministic policy: mean, std and each episode's (raw) return."""

    mean_reward: float
    std_reward: float
    mean_ep_length: float
    returns: tuple[float, ...]


@dataclass(frozen=True)
class RunResult:
    """How a run ended: ``status`` is ``completed``, ``interrupted`` (saved) or ``aborted``."""

    status: str
    num_timesteps: int
    final_eval: EvalResult | None
    wall_time_s: float
    paths: RunPaths


# -- evaluation --------------------------------------------------------------------------------


def sync_eval_env(eval_env: VecEnv, train_env: VecEnv) -> None:
    """Copy the training env's normalisation statistics into ``eval_env`` and freeze them.

    Rewards in ``eval_env`` are left raw; the per-env running returns are not copied when the
    numbers of envs differ (:func:`envs.load_normalization_state` zeroes them).
    """
    envs.load_normalization_state(eval_env, envs.normalization_state(train_env))
    envs.set_training(eval_env, False)


def evaluate(agent: OnPolicyAgent, eval_env: VecEnv, n_episodes: int) -> EvalResult:
    """Run the deterministic policy for ``n_episodes`` whole episodes of ``eval_env``.

    Returns are the raw (unnormalised) ones that ``VecMonitor`` records.
    """
    returns: list[float] = []
    lengths: list[int] = []
    obs = eval_env.reset()
    while len(returns) < n_episodes:
        action, _ = agent.predict(obs, deterministic=True)
        obs, _, dones, infos = eval_env.step(action)
        for done, info in zip(dones, infos):
            if done and "episode" in info and len(returns) < n_episodes:
                returns.append(float(info["episode"]["r"]))
                lengths.append(int(info["episode"]["l"]))
    return EvalResult(
        mean_reward=float(np.mean(returns)),
        std_reward=float(np.std(returns)),
        mean_ep_length=float(np.mean(lengths)),
        returns=tuple(returns),
    )


# -- cadences ----------------------------------------------------------------------------------


def _next_multiple(step: int, every: int) -> float:
    """The first multiple of ``every`` after ``step``; infinity when ``every`` is 0."""
    return (step // every + 1) * every if every > 0 else math.inf


# -- the run -----------------------------------------------------------------------------------


class TrainingRun:
    """Train an agent to ``config.total_timesteps`` with logs, evaluations and checkpoints.

    Args:
        agent: a new agent or one loaded from a checkpoint (its step count is kept).
        config: cadences and output directory.
        make_env: builds an environment with the training settings; called once with
            ``(1, agent.seed + EVAL_SEED_OFFSET)`` for the evaluation environment.
    """

    def __init__(self, agent: OnPolicyAgent, config: TrainingConfig, make_env: EnvFactory):
        self.agent = agent
        self.config = config
        self.make_env = make_env
        self.paths = RunPaths(config.logdir)
        self.stop_requested = False
        self.last_eval: EvalResult | None = None
        self._last_eval_step = -1
        self._start_time = time.perf_counter()
        self._start_step = agent.num_timesteps
        self._next_save = _next_multiple(agent.num_timesteps, config.save_every)
        self._next_eval = _next_multiple(agent.num_timesteps, config.eval_every)

    def run(self) -> RunResult:
        """Train, then save, evaluate and summarise; see the module docstring for Ctrl-C.

        Raises:
            ValueError: if the agent already has ``total_timesteps`` steps or more.
            rl_ig.run.CsvLogError: if ``continue_logs`` and a CSV file in the logdir cannot be
                continued (one line naming the file and the fix).
        """
        remaining = self.config.total_timesteps - self.agent.num_timesteps
        if remaining < 1:
            raise ValueError(
                f"the agent already has {self.agent.num_timesteps} steps, not fewer than the "
                f"{self.config.total_timesteps} to train to; ask for more steps"
            )
        # Ctrl-C is a stop request from before the logs exist (a signal that arrived while they
        # were being opened would otherwise be lost or abort the run).
        with stop_on_sigint(self.request_stop):
            self._open_outputs()
            try:
                return self._train_and_finish(remaining)
            finally:
                self.bar.close()
                self.writer.close()
                self.eval_env.close()

    def _open_outputs(self) -> None:
        self._start_time = time.perf_counter()
        keep = self.agent.num_timesteps if self.config.continue_logs else None
        self.progress_log = CsvLog(self.paths.progress, keep_until=keep, step_column=PROGRESS_STEP)
        self.geometry_log = CsvLog(self.paths.geometry, keep_until=keep, step_column=PROGRESS_STEP)
        self.eval_log = CsvLog(self.paths.evaluations, keep_until=keep, step_column=EVAL_STEP)
        purge = None if keep is None else keep + 1  # hide events logged after the checkpoint
        self.writer = SummaryWriter(log_dir=str(self.paths.logdir), purge_step=purge)
        self.eval_env = self.make_env(1, self.agent.seed + EVAL_SEED_OFFSET)
        self.bar = tqdm(
            total=self.config.total_timesteps,
            initial=self.agent.num_timesteps,
            unit="step",
            disable=None if self.config.progress else True,  # None: only on a terminal
            dynamic_ncols=True,
        )

    def _train_and_finish(self, remaining: int) -> RunResult:
        try:
            self.agent.learn(remaining, callback=self._on_update, reset_num_timesteps=False)
        except KeyboardInterrupt:
            return self._finish("aborted")
        if self.stop_requested:
            self.agent.save(self.paths.checkpoint)
            return self._finish("interrupted")
        self.agent.save(self.paths.final_model)
        if self._last_eval_step != self.agent.num_timesteps:
            self._evaluate()
        return self._finish("completed")

    def request_stop(self) -> None:
        """Stop after the current update and save a checkpoint (what the first Ctrl-C does)."""
        self.stop_requested = True
        announce_stop("update")

    def _on_update(self, agent: OnPolicyAgent, info: dict[str, float]) -> bool:
        step = agent.num_timesteps
        self._log(info)
        self._advance_bar(info)
        if step >= self._next_save:
            agent.save(self.paths.checkpoint)
            self._next_save = _next_multiple(step, self.config.save_every)
        if step >= self._next_eval:
            self._evaluate()
            self._next_eval = _next_multiple(step, self.config.eval_every)
        return not self.stop_requested

    def _log(self, info: Mapping[str, float]) -> None:
        step = self.agent.num_timesteps
        row = {
            PROGRESS_STEP: float(step),
            "time/iterations": float(self.agent.n_updates),
            "time/time_elapsed": time.perf_counter() - self._start_time,
            **info,
        }
        for key, value in row.items():
            self.writer.add_scalar(key, value, step)
        self.progress_log.write(row)
        if is_measured(self.agent.geometry_every, self.agent.n_updates - 1):
            self.geometry_log.write(
                {k: v for k, v in row.items() if k.startswith(GEOMETRY_PREFIX) or k in _STEP_KEYS}
            )

    def _advance_bar(self, info: Mapping[str, float]) -> None:
        self.bar.update(self.agent.num_timesteps - self.bar.n)
        postfix = {"steps/s": f"{info.get('time/fps', float('nan')):.0f}"}
        returns = self.agent.collector.episode_returns
        if returns:
            postfix["return"] = f"{np.mean(returns):.1f}"
        self.bar.set_postfix(postfix, refresh=False)

    def _evaluate(self) -> EvalResult:
        step = self.agent.num_timesteps
        sync_eval_env(self.eval_env, self.agent.env)
        result = evaluate(self.agent, self.eval_env, self.config.eval_episodes)
        self.writer.add_scalar("eval/mean_reward", result.mean_reward, step)
        self.writer.add_scalar("eval/std_reward", result.std_reward, step)
        self.writer.add_scalar("eval/mean_ep_length", result.mean_ep_length, step)
        self.eval_log.write(
            {
                EVAL_STEP: step,
                "mean_reward": result.mean_reward,
                "std_reward": result.std_reward,
                "mean_ep_length": result.mean_ep_length,
                "episodes": len(result.returns),
            }
        )
        self.writer.flush()
        self.last_eval, self._last_eval_step = result, step
        return result

    def _finish(self, status: str) -> RunResult:
        result = RunResult(
            status=status,
            num_timesteps=self.agent.num_timesteps,
            final_eval=self.last_eval,
            wall_time_s=time.perf_counter() - self._start_time,
            paths=self.paths,
        )
        write_json(self.paths.summary, self.summary(result))
        return result

    def summary(self, result: RunResult) -> dict[str, Any]:
        """What ``run_summary.json`` holds."""
        desc = env_description(self.agent.env)
        evaluation = result.final_eval
        saved = {
            "completed": self.paths.final_model,
            "interrupted": self.paths.checkpoint,
        }.get(result.status)
        return {
            "algo": self.agent.algo,
            "env_id": desc["id"],
            "seed": self.agent.seed,
            "n_envs": desc["n_envs"],
            "normalize_obs": desc["normalize_obs"],
            "normalize_reward": desc["normalize_reward"],
            "status": result.status,
            "start_timesteps": self._start_step,
            "num_timesteps": result.num_timesteps,
            "total_timesteps": self.config.total_timesteps,
            "n_updates": self.agent.n_updates,
            "geometry_every": self.agent.geometry_every,
            "final_eval_mean_reward": None if evaluation is None else evaluation.mean_reward,
            "final_eval_std_reward": None if evaluation is None else evaluation.std_reward,
            "final_eval_step": None if evaluation is None else self._last_eval_step,
            "wall_time_s": result.wall_time_s,
            "saved_model": None if saved is None else str(saved),
            "resumed_from": None
            if self.config.resumed_from is None
            else str(self.config.resumed_from),
            "paths": {**self.paths.as_dict(), "geometry": str(self.paths.geometry)},
            "hyperparameters": dataclasses.asdict(self.agent.config),
        }
