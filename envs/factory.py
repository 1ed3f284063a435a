"""Vectorised environments built from Stable-Baselines3's own VecEnv classes.

The stack, innermost first::

    gymnasium.make(env_id)      per env: TimeLimit (marks truncation), no env checker, no render
    DummyVecEnv | SubprocVecEnv
    VecMonitor                  info["episode"] holds raw, unnormalised returns and lengths
    VecNormalize                only when observations or rewards are normalised

Env ``i`` is reset with seed ``seed + i`` and its action space is seeded with ``seed + i``.
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import gymnasium
import numpy as np
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.vec_env import (
    DummyVecEnv,
    SubprocVecEnv,
    VecEnv,
    VecMonitor,
    VecNormalize,
)
from stable_baselines3.common.vec_env.util import dict_to_obs

from envs.registry import resolve_env_id

VEC_ENV_KINDS: tuple[str, ...] = ("dummy", "subproc")


class InProcessVecEnv(DummyVecEnv):
    """SB3's ``DummyVecEnv`` minus the ``deepcopy`` of every step's info dicts and observations.

    gymnasium environments return fresh info dicts each step, so a shallow copy of each is as
    safe; on HalfCheetah the deepcopy alone was about a sixth of the rollout's time under
    cProfile. Everything else is SB3's own code path.
    """

    def step_wait(self):  # type: ignore[no-untyped-def]
        for i in range(self.num_envs):
            obs, self.buf_rews[i], terminated, truncated, info = self.envs[i].step(self.actions[i])
            self.buf_dones[i] = terminated or truncated
            info["TimeLimit.truncated"] = truncated and not terminated
            if self.buf_dones[i]:
                info["terminal_observation"] = obs
                obs, self.reset_infos[i] = self.envs[i].reset()
            self.buf_infos[i] = info
            self._save_obs(i, obs)
        infos = [dict(info) for info in self.buf_infos]
        return self._obs_from_buf(), np.copy(self.buf_rews), np.copy(self.buf_dones), infos

    def _obs_from_buf(self):  # type: ignore[no-untyped-def]
        # SB3 deep-copies the dict of observation buffers; a fresh copy of each array is the
        # same result (the buffers hold plain numeric arrays) at a fifth of the cost.
        return dict_to_obs(self.observation_space, {k: v.copy() for k, v in self.buf_obs.items()})


# gymnasium.make arguments the factory sets itself; overriding them would break its guarantees.
_RESERVED_ENV_KWARGS: tuple[str, ...] = ("render_mode", "disable_env_checker")


def _require_int(name: str, value: object, minimum: int) -> int:
    """Return ``value`` as an int; raise unless it is an integer (not a bool) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int >= {minimum}, got {type(value).__name__} {value!r}")
    if int(value) < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value}")
    return int(value)


def _require_real(name: str, value: object, allowed: str, ok: Callable[[float], bool]) -> float:
    """Return ``value`` as a float; raise unless it is a real number (not a bool) with ``ok``.

    ``allowed`` describes the range for the message, e.g. ``"in (0, 1]"``. NaN fails every
    range check written as a comparison, so it is rejected without a special case.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{name} must be a real number {allowed}, got {type(value).__name__} {value!r}"
        )
    if not ok(float(value)):
        raise ValueError(f"{name} must be {allowed}, got {value}")
    return float(value)


class LeanRunningMeanStd(RunningMeanStd):
    """SB3's running moments with the batch moments taken by plain ufunc reductions.

    ``np.mean``/``np.var`` route through Python-level dispatch that costs more than the
    arithmetic on a few rows; ``np.add.reduce`` computes the same sums in the same order, so the
    statistics are bit-for-bit SB3's (tested).
    """

    def update(self, arr: np.ndarray) -> None:
        n = arr.shape[0]
        mean = np.add.reduce(arr, axis=0) / n
        dev = arr - mean
        self.update_from_moments(mean, np.add.reduce(dev * dev, axis=0) / n, n)


class LeanVecNormalize(VecNormalize):
    """SB3's ``VecNormalize`` with leaner hot paths and bit-identical results (tested).

    Running statistics are :class:`LeanRunningMeanStd`; for array observations the per-step
    normalisation skips SB3's defensive ``deepcopy`` (the arithmetic makes a new array anyway)
    and clips with two ufunc calls instead of ``np.clip``'s Python-level dispatch.
    """

    def __init__(self, venv: VecEnv, **kwargs: Any):
        super().__init__(venv, **kwargs)
        for name in ("obs_rms", "ret_rms"):
            if name in self.__dict__:  # obs_rms exists only when observations are normalised
                setattr(self, name, _lean(self.__dict__[name]))

    def normalize_obs(self, obs: Any) -> Any:
        if not (self.norm_obs and isinstance(obs, np.ndarray)):
            return super().normalize_obs(obs)
        rms = self.obs_rms
        scaled = (obs - rms.mean) / np.sqrt(rms.var + self.epsilon)
        return _clip(scaled, self.clip_obs).astype(np.float32)

    def normalize_reward(self, reward: np.ndarray) -> np.ndarray:
        if self.norm_reward:
            reward = _clip(reward / np.sqrt(self.ret_rms.var + self.epsilon), self.clip_reward)
        return reward.astype(np.float32)


def _clip(x: np.ndarray, bound: float) -> np.ndarray:
    # The same values as np.clip(x, -bound, bound), NaN included.
    return np.minimum(np.maximum(x, -bound), bound)


def _lean(rms: Any) -> Any:
    if not isinstance(rms, RunningMeanStd):
        return rms  # dict observation spaces keep a dict of statistics
    lean = LeanRunningMeanStd(shape=rms.mean.shape)
    lean.mean, lean.var, lean.count = rms.mean.copy(), rms.var.copy(), rms.count
    return lean


@dataclass(kw_only=True, frozen=True)
class VecEnvConfig:
    """Everything :func:`make_vec_env` needs; validated on construction.

    Attributes:
        name: Short name (``"HalfCheetah"``) or registered gymnasium id.
        n_envs: Number of parallel environments, >= 1.
        seed: Base seed, >= 0; env ``i`` gets ``seed + i``.
        normalize_obs: Normalise observations with running statistics (VecNormalize).
        normalize_reward: Scale rewards by the running std of the discounted return.
        gamma: Discount of the return whose std scales rewards, in (0, 1].
        clip_obs: Normalised observations are clipped to ``[-clip_obs, clip_obs]``, > 0.
        clip_reward: Normalised rewards are clipped to ``[-clip_reward, clip_reward]``, > 0.
        vec_env: ``"dummy"`` (all envs in this process) or ``"subproc"`` (one process each).
        env_kwargs: Extra keyword arguments for ``gymnasium.make``.
    """

    name: str
    n_envs: int = 1
    seed: int = 0
    normalize_obs: bool = False
    normalize_reward: bool = False
    gamma: float = 0.99
    clip_obs: float = 10.0
    clip_reward: float = 10.0
    vec_env: str = "dummy"
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        resolve_env_id(self.name)
        # Canonical Python types (numpy integers included) so gymnasium's seeding accepts them.
        object.__setattr__(self, "n_envs", _require_int("n_envs", self.n_envs, minimum=1))
        object.__setattr__(self, "seed", _require_int("seed", self.seed, minimum=0))
        gamma = _require_real("gamma", self.gamma, "in (0, 1]", lambda x: 0.0 < x <= 1.0)
        object.__setattr__(self, "gamma", gamma)
        for clip in ("clip_obs", "clip_reward"):
            # inf is allowed: it means "do not clip".
            value = _require_real(clip, getattr(self, clip), "> 0", lambda x: x > 0.0)
            object.__setattr__(self, clip, value)
        if self.vec_env not in VEC_ENV_KINDS:
            raise ValueError(f"vec_env must be one of {VEC_ENV_KINDS}, got {self.vec_env!r}")
        self._check_env_kwargs()

    def _check_env_kwargs(self) -> None:
        if not isinstance(self.env_kwargs, Mapping):
            raise TypeError(
                f"env_kwargs must be a dict or None, got {type(self.env_kwargs).__name__}"
            )
        reserved = sorted(set(self.env_kwargs) & set(_RESERVED_ENV_KWARGS))
        if reserved:
            raise ValueError(
                f"env_kwargs must not set {', '.join(reserved)}: make_vec_env builds envs "
                "without rendering and without gymnasium's env checker"
            )


def _make_env(env_id: str, env_kwargs: Mapping[str, Any], action_seed: int) -> gymnasium.Env:
    """Build one environment; a module-level function so SubprocVecEnv can pickle it.

    ``gymnasium.make`` keeps the registered ``TimeLimit`` (it sets ``truncated``, which SB3
    reports as ``info["TimeLimit.truncated"]``), while the passive env checker is skipped: it is
    one more wrapper on every step, and checking an environment belongs in that env's own tests.
    """
    env = gymnasium.make(env_id, render_mode=None, disable_env_checker=True, **env_kwargs)
    env.action_space.seed(action_seed)
    return env


def _env_thunks(env_id: str, config: VecEnvConfig) -> list[Callable[[], gymnasium.Env]]:
    """One picklable constructor per env; env ``i`` seeds its action space with ``seed + i``."""
    env_kwargs = dict(config.env_kwargs)
    return [
        functools.partial(_make_env, env_id, env_kwargs, config.seed + index)
        for index in range(config.n_envs)
    ]


def build_vec_env(config: VecEnvConfig) -> VecEnv:
    """Build the vectorised environment that ``config`` describes (see :func:`make_vec_env`)."""
    env_id = resolve_env_id(config.name)
    thunks = _env_thunks(env_id, config)
    venv: VecEnv = InProcessVecEnv(thunks) if config.vec_env == "dummy" else SubprocVecEnv(thunks)
    # Applied at the next reset: env i is reset with seed + i.
    venv.seed(config.seed)
    venv.action_space.seed(config.seed)
    venv = VecMonitor(venv)
    if config.normalize_obs or config.normalize_reward:
        venv = LeanVecNormalize(
            venv,
            norm_obs=config.normalize_obs,
            norm_reward=config.normalize_reward,
            gamma=config.gamma,
            clip_obs=config.clip_obs,
            clip_reward=config.clip_reward,
        )
    return venv


def make_vec_env(
    name: str,
    n_envs: int = 1,
    seed: int = 0,
    *,
    normalize_obs: bool = False,
    normalize_reward: bool = False,
    gamma: float = 0.99,
    clip_obs: float = 10.0,
    clip_reward: float = 10.0,
    vec_env: str = "dummy",
    env_kwargs: Mapping[str, Any] | None = None,
) -> VecEnv:
    """Build a seeded, monitored, optionally normalised vectorised environment.

    The stack is ``VecNormalize(VecMonitor(DummyVecEnv | SubprocVecEnv))``, VecNormalize only
    when ``normalize_obs`` or ``normalize_reward``. Because VecMonitor sits below VecNormalize,
    ``info["episode"]["r"]`` is the raw return even when rewards are normalised. Each env keeps
    its registered ``TimeLimit``, so time-limit ends arrive as ``info["TimeLimit.truncated"]``
    with ``info["terminal_observation"]``.

    Args:
        name: Short name (``"HalfCheetah"``, case-insensitive; the newest registered version) or
            any registered gymnasium id (``"HalfCheetah-v4"``).
        n_envs: Number of parallel environments, >= 1.
        seed: Base seed, >= 0. Env ``i`` is reset with ``seed + i`` on the first ``reset()`` and
            its action space is seeded with ``seed + i``; ``venv.action_space`` gets ``seed``.
        normalize_obs: Normalise observations by running mean and variance.
        normalize_reward: Divide rewards by the running std of the ``gamma``-discounted return.
        gamma: Discount for reward normalisation, in (0, 1].
        clip_obs: Clip normalised observations to ``[-clip_obs, clip_obs]``, > 0.
        clip_reward: Clip normalised rewards to ``[-clip_reward, clip_reward]``, > 0.
        vec_env: ``"dummy"`` (sequential, in-process) or ``"subproc"`` (one process per env).
        env_kwargs: Extra keyword arguments for ``gymnasium.make`` (not ``render_mode`` or
            ``disable_env_checker``, which the factory sets).

    Returns:
        The vectorised environment; call ``reset()`` before ``step()``.

    Raises:
        TypeError: If an argument has the wrong type (``n_envs=2.0``, ``seed=True``).
        ValueError: If an argument is out of range or ``name`` is unknown; one line that names
            the argument, the bad value and what is allowed.
    """
    config = VecEnvConfig(
        name=name,
        n_envs=n_envs,
        seed=seed,
        normalize_obs=normalize_obs,
        normalize_reward=normalize_reward,
        gamma=gamma,
        clip_obs=clip_obs,
        clip_reward=clip_reward,
        vec_env=vec_env,
        env_kwargs={} if env_kwargs is None else env_kwargs,
    )
    return build_vec_env(config)


def action_space(name: str) -> gymnasium.Space:
    """The action space of environment ``name``, read from one throwaway instance."""
    env = gymnasium.make(resolve_env_id(name), disable_env_checker=True)
    try:
        return env.action_space
    finally:
        env.close()
