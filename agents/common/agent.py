"""The surface every on-policy agent shares: construct, learn, predict, save, load.

An agent composes an actor, a critic, a rollout collector and its own update; subclasses
provide only ``_setup`` (optimisers, Fisher) and ``update(batch) -> dict[str, float]``.
"""

from __future__ import annotations

import abc
import dataclasses
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecMonitor

import envs
from agents.common.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from agents.common.config import build_config
from agents.common.geometry import (
    DEFAULT_GEOMETRY_EVERY,
    StepProbe,
    check_geometry_every,
    update_with_geometry,
)
from agents.common.networks import Critic, flat_obs_dim, make_actor
from agents.common.rollout import Batch, RolloutCollector
from rl_ig.fisher import PolicyFisher

Callback = Callable[["OnPolicyAgent", dict[str, float]], bool | None]


def as_vec_env(env: VecEnv | gym.Env | str, seed: int) -> VecEnv:
    """A ``VecEnv`` from a ``VecEnv``, a gymnasium env or an environment name."""
    if isinstance(env, VecEnv):
        return env
    if isinstance(env, str):
        return envs.make_vec_env(env, n_envs=1, seed=seed)
    if isinstance(env, gym.Env):
        return VecMonitor(DummyVecEnv([lambda: env]))
    raise TypeError(
        f"env must be a VecEnv, a gymnasium.Env or an environment name, got {type(env).__name__}"
    )


def _check_seed_and_device(seed: Any, device: Any) -> torch.device:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be 'cpu' or 'cuda[:N]', got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available; use --device cpu")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda[:N]', got {device!r}")
    return dev


def env_description(env: VecEnv) -> dict[str, Any]:
    """What is needed to rebuild an equivalent environment for a loaded agent."""
    try:
        spec = env.get_attr("spec", indices=[0])[0]
        env_id = spec.id if spec is not None else None
    except (AttributeError, IndexError):
        env_id = None
    norm = envs.find_vec_normalize(env)
    return {
        "id": env_id,
        "n_envs": env.num_envs,
        "normalize_obs": bool(norm.norm_obs) if norm is not None else False,
        "normalize_reward": bool(norm.norm_reward) if norm is not None else False,
        "obs_shape": list(env.observation_space.shape or ()),
        "action_space": repr(env.action_space),
    }


class OnPolicyAgent(abc.ABC):
    """Base of the on-policy agents; see :class:`agents.TRPO` for the hyperparameters.

    Args:
        env: a ``VecEnv`` (as built by :func:`envs.make_vec_env`), a gymnasium env or a name.
        seed: seeds the networks' initialisation, action sampling and minibatch order.
        device: where the networks live (``"cpu"`` or ``"cuda"``).
        geometry_every: measure the step's geometry (``geometry/`` entries of the update's
            dict, see :mod:`agents.common.geometry`) on the first update and every this many
            after it; 0: never. Training is the same either way.
        **hyperparameters: fields of the agent's configuration class (rl-zoo aliases too).
    """

    algo: ClassVar[str]
    config_class: ClassVar[type]
    aliases: ClassVar[dict[str, str]] = {}
    # Names that set the same quantity in another library's convention: {theirs: ours}.
    conventions: ClassVar[dict[str, str]] = {}
    fisher: PolicyFisher  # the actor's; built by every subclass's _setup

    @classmethod
    def resolve_hyperparameters(cls, hp: dict[str, Any], action_space: gym.Space) -> dict[str, Any]:
        """Translate names given in another library's convention into this agent's own."""
        return dict(hp)

    def __init__(
        self,
        env: VecEnv | gym.Env | str,
        *,
        seed: int = 0,
        device: str = "cpu",
        geometry_every: int = DEFAULT_GEOMETRY_EVERY,
        **hyperparameters: Any,
    ):
        self.device = _check_seed_and_device(seed, device)
        self.seed = seed
        self.geometry_every = check_geometry_every(geometry_every)
        self.env = as_vec_env(env, seed)
        hp = self.resolve_hyperparameters(hyperparameters, self.env.action_space)
        self.config = build_config(self.config_class, hp, aliases=self.aliases)
        self.env.seed(seed)
        self.env.action_space.seed(seed)
        obs_space, act_space = self.env.observation_space, self.env.action_space
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            # float32 whatever the default dtype: the rollout buffers are float32.
            actor = make_actor(obs_space, act_space, self.config.policy)
            self.actor = actor.to(self.device, torch.float32)
            critic = Critic(flat_obs_dim(obs_space), self.config.policy)
            self.critic = critic.to(self.device, torch.float32)
        self.generator = torch.Generator().manual_seed(seed)
        self.collector = RolloutCollector(self.env, self.config.n_steps, self.device)
        self.num_timesteps = 0
        self.n_updates = 0
        # 1 at the start of learn(), 0 at its end: what rl-zoo's "lin_X" schedules decay with.
        self.progress_remaining = 1.0
        self._learn_target = 0
        self._setup()

    # -- what a subclass provides ------------------------------------------------------------

    @abc.abstractmethod
    def _setup(self) -> None:
        """Build optimisers and anything else the update needs."""

    @abc.abstractmethod
    def update(self, batch: Batch) -> dict[str, float]:
        """One policy and critic update from a rollout; returns the measurements of the step."""

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Optimisers whose state a checkpoint keeps."""
        return {}

    def kl_bound(self) -> float:
        """The bound the update enforces on the mean KL of its step (NaN: none)."""
        return math.nan

    def measured_geometry(self, probe: StepProbe, grad: torch.Tensor) -> dict[str, float]:
        """The agent's own ``geometry/`` measures of a measured update (none by default).

        Called after the step, with what was kept before it and ``g: (n,)``, the policy
        gradient at ``θ_old`` (see :mod:`agents.common.geometry`). Must draw no random number
        and leave the parameters as it found them.
        """
        return {}

    # -- training ----------------------------------------------------------------------------

    def learn(
        self,
        total_timesteps: int,
        callback: Callback | None = None,
        reset_num_timesteps: bool = True,
    ) -> OnPolicyAgent:
        """Collect and update until ``total_timesteps`` more environment steps have been taken.

        Args:
            total_timesteps: steps (summed over environments) to train for.
            callback: called after every update with the agent and the update's dict; returning
                ``False`` stops training.
            reset_num_timesteps: count from zero (SB3's convention) instead of continuing.
        """
        if isinstance(total_timesteps, bool) or not isinstance(total_timesteps, int):
            raise TypeError(f"total_timesteps must be an integer, got {total_timesteps!r}")
        if total_timesteps < 1:
            raise ValueError(f"total_timesteps must be >= 1, got {total_timesteps}")
        if reset_num_timesteps:
            self.num_timesteps = 0
        target = self.num_timesteps + total_timesteps
        self._learn_target = target
        while self.num_timesteps < target:
            info = self.train_iteration()
            if callback is not None and callback(self, info) is False:
                break
        return self

    def train_iteration(self) -> dict[str, float]:
        """Collect one rollout and update on it; returns the update's dict with timing added.

        ``time/update_s`` leaves out the time spent measuring the step, which a measured update
        reports as ``time/geometry_s``; ``time/fps`` counts the whole iteration.
        """
        start = time.perf_counter()
        self.collector.collect(self.actor, self.generator)
        collected = time.perf_counter()
        batch = self.collector.batch(self.critic, self.config.gamma, self.config.gae_lambda)
        batch = _to_device(batch, self.device)
        self.num_timesteps += self.config.n_steps * self.env.num_envs
        if self._learn_target > 0:
            self.progress_remaining = max(0.0, 1.0 - self.num_timesteps / self._learn_target)
        info, geometry_s = update_with_geometry(self, batch)
        self.n_updates += 1
        end = time.perf_counter()
        info["time/rollout_s"] = collected - start
        info["time/update_s"] = end - collected - (geometry_s or 0.0)
        if geometry_s is not None:
            info["time/geometry_s"] = geometry_s
        info["time/fps"] = self.config.n_steps * self.env.num_envs / (end - start)
        returns = self.collector.episode_returns
        if returns:
            info["rollout/ep_rew_mean"] = float(np.mean(returns))
            info["rollout/ep_len_mean"] = float(np.mean(self.collector.episode_lengths))
        return info

    # -- acting ------------------------------------------------------------------------------

    @torch.inference_mode()
    def predict(self, obs: np.ndarray, deterministic: bool = False) -> tuple[np.ndarray, None]:
        """Actions for observations, as Stable-Baselines3's ``predict``: ``(actions, None)``.

        ``obs`` is what the (normalised) environment returns, ``(n_envs, *obs_shape)`` or a
        single observation. Continuous actions are clipped to the action space.
        """
        obs_arr = np.asarray(obs, dtype=np.float32)
        single = obs_arr.shape == self.env.observation_space.shape
        flat = torch.as_tensor(obs_arr.reshape(1 if single else len(obs_arr), -1))
        noise = None
        if not deterministic:
            noise = self.actor.noise((flat.shape[0],), self.generator)
        action = (
            self.actor.act(flat.to(self.device), None if noise is None else noise.to(self.device))
            .cpu()
            .numpy()
        )
        space = self.env.action_space
        if isinstance(space, gym.spaces.Box):
            action = np.clip(action.reshape(-1, *space.shape), space.low, space.high)
        return (action[0] if single else action), None

    # -- persistence -------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue training: networks, optimisers, RNG, normalisation."""
        return {
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in self._optimizers().items()},
            "generator": self.generator.get_state(),
            "normalization": envs.normalization_state(self.env),
        }

    def metadata(self) -> dict[str, Any]:
        return {
            "algo": self.algo,
            "config": dataclasses.asdict(self.config),
            "seed": self.seed,
            "geometry_every": self.geometry_every,
            "num_timesteps": self.num_timesteps,
            "n_updates": self.n_updates,
            "env": env_description(self.env),
        }

    def save(self, path: str | Path) -> Path:
        """Write a checkpoint (atomically) to ``path``; returns the path written."""
        return save_checkpoint(path, self.metadata(), self.state_dict())

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (shapes are checked by PyTorch)."""
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        for name, opt in self._optimizers().items():
            opt.load_state_dict(state["optimizers"][name])
        self.generator.set_state(state["generator"])
        envs.load_normalization_state(self.env, state["normalization"])

    @classmethod
    def load(
        cls,
        path: str | Path,
        env: VecEnv | gym.Env | str | None = None,
        device: str = "cpu",
        geometry_every: int | None = None,
    ) -> OnPolicyAgent:
        """Rebuild an agent from a checkpoint; without ``env`` the saved environment is made.

        ``geometry_every`` defaults to the saved one (:data:`DEFAULT_GEOMETRY_EVERY` for a
        checkpoint that predates it).
        """
        meta, state = load_checkpoint(path)
        if geometry_every is None:
            geometry_every = meta.get("geometry_every", DEFAULT_GEOMETRY_EVERY)
        if meta.get("algo") != cls.algo:
            raise CheckpointError(
                f"{path} holds a {meta.get('algo')!r} agent, not {cls.algo!r}; "
                f"load it with agents.{str(meta.get('algo')).upper()}.load"
            )
        if env is None:
            env = _rebuild_env(meta, path)
        agent = cls(
            env,
            seed=meta["seed"],
            device=device,
            geometry_every=geometry_every,
            **meta["config"],
        )
        _check_spaces(meta, agent.env, path)
        try:
            agent.load_state_dict(state)
        except (KeyError, RuntimeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0][:160]
            raise CheckpointError(f"{path} does not fit this agent: {first}") from None
        agent.num_timesteps = int(meta["num_timesteps"])
        agent.n_updates = int(meta["n_updates"])
        # Fresh episodes, not a replay of the ones the run started with (the simulator's state
        # mid-episode is not part of a checkpoint).
        agent.env.seed(agent.seed + agent.num_timesteps)
        return agent


def _to_device(batch: Batch, device: torch.device) -> Batch:
    if device.type == "cpu":
        return batch
    return Batch(**{f.name: getattr(batch, f.name).to(device) for f in dataclasses.fields(batch)})


def _rebuild_env(meta: dict[str, Any], path: str | Path) -> VecEnv:
    desc = meta.get("env", {})
    if not desc.get("id"):
        raise CheckpointError(f"{path} does not record its environment; pass env=... to load")
    return envs.make_vec_env(
        desc["id"],
        n_envs=int(desc["n_envs"]),
        seed=int(meta["seed"]),
        normalize_obs=bool(desc["normalize_obs"]),
        normalize_reward=bool(desc["normalize_reward"]),
        gamma=float(meta["config"].get("gamma", 0.99)),
    )


def _check_spaces(meta: dict[str, Any], env: VecEnv, path: str | Path) -> None:
    desc = meta.get("env", {})
    if list(env.observation_space.shape or ()) != desc.get("obs_shape"):
        raise CheckpointError(
            f"{path} was trained on observations of shape {desc.get('obs_shape')}, the given env "
            f"has {list(env.observation_space.shape or ())}; pass the env it was trained on"
        )
    if repr(env.action_space) != desc.get("action_space"):
        raise CheckpointError(
            f"{path} was trained with actions {desc.get('action_space')}, the given env has "
            f"{env.action_space!r}; pass the env it was trained on"
        )
