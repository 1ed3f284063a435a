"""On-policy rollout collection into preallocated tensors, and the batch it produces."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.vec_env import VecEnv

from agents.common.gae import compute_gae, next_state_values
from agents.common.networks import Actor, Critic


@dataclass
class Batch:
    """A flattened rollout of ``N = n_steps·n_envs`` transitions.

    Attributes:
        obs: ``(N, obs_dim)`` observations the actions were taken in.
        actions: ``(N, act_dim)`` (continuous) or ``(N,)`` (discrete) actions, unclipped.
        advantages: ``(N,)`` GAE advantages.
        returns: ``(N,)`` λ-returns, the critic's targets.
        values: ``(N,)`` critic values at collection time.
    """

    obs: torch.Tensor
    actions: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    values: torch.Tensor


class RolloutBuffer:
    """Storage for ``n_steps`` steps of ``n_envs`` environments, reused every rollout."""

    def __init__(self, n_steps: int, n_envs: int, obs_dim: int, action_space: gym.Space):
        t, e = n_steps, n_envs
        # NumPy arrays written per step (a NumPy assignment costs a fraction of a torch call),
        # and torch views of the same memory for the update.
        self.obs_np = np.zeros((t, e, obs_dim), dtype=np.float32)
        if isinstance(action_space, gym.spaces.Discrete):
            self.actions_np = np.zeros((t, e), dtype=np.int64)
        else:
            self.actions_np = np.zeros((t, e, int(np.prod(action_space.shape))), dtype=np.float32)
        self.obs = torch.from_numpy(self.obs_np)
        self.actions = torch.from_numpy(self.actions_np)
        self.rewards = np.zeros((t, e), dtype=np.float32)
        self.terminated = np.zeros((t, e), dtype=bool)
        self.truncated = np.zeros((t, e), dtype=bool)
        self.final_obs: list[tuple[int, int, np.ndarray]] = []
        self.last_obs = torch.zeros(e, obs_dim)

    def reset(self) -> None:
        self.terminated[:] = False
        self.truncated[:] = False
        self.final_obs.clear()


class RolloutCollector:
    """Steps a ``VecEnv`` with the actor and fills a :class:`RolloutBuffer`.

    Only the actions are computed per step; log-probabilities and values are evaluated on the
    whole batch afterwards, where they cost one forward pass instead of ``n_steps``. The
    parameters do not change during collection, so the numbers are the same.
    """

    def __init__(
        self, env: VecEnv, n_steps: int, device: torch.device | str = "cpu", stats_window: int = 100
    ):
        self.env = env
        self.device = torch.device(device)
        self.n_steps = n_steps
        self.n_envs = env.num_envs
        obs_dim = int(np.prod(env.observation_space.shape))
        self.buffer = RolloutBuffer(n_steps, self.n_envs, obs_dim, env.action_space)
        space = env.action_space
        self._clip = (space.low, space.high) if isinstance(space, gym.spaces.Box) else None
        self._obs: np.ndarray | None = None
        self.episode_returns: deque[float] = deque(maxlen=stats_window)
        self.episode_lengths: deque[int] = deque(maxlen=stats_window)
        self.episodes = 0

    def reset(self) -> None:
        """Start fresh episodes (on first use, and after the environment was replaced)."""
        self._obs = self.env.reset()

    @torch.inference_mode()
    def collect(self, actor: Actor, generator: torch.Generator) -> None:
        """Run ``n_steps`` steps in every environment with actions sampled from ``actor``."""
        if self._obs is None:
            self.reset()
        buf = self.buffer
        buf.reset()
        noise = actor.noise((self.n_steps, self.n_envs), generator)
        act = self._sampler(actor, noise)
        obs = self._obs
        for t in range(self.n_steps):
            buf.obs_np[t] = obs
            action = buf.actions_np[t]
            action[...] = act(t, buf.obs_np[t])
            if self._clip is not None:
                action = np.minimum(np.maximum(action, self._clip[0]), self._clip[1])
            obs, rewards, dones, infos = self.env.step(action)
            buf.rewards[t] = rewards
            if dones.any():
                self._record_episode_ends(t, dones, infos)
        buf.last_obs.copy_(torch.from_numpy(obs))
        self._obs = obs

    def _sampler(self, actor: Actor, noise: torch.Tensor):  # type: ignore[no-untyped-def]
        """``(t, obs) ↦ actions`` for this rollout: NumPy on the CPU, torch elsewhere."""
        if self.device.type == "cpu":
            sample = actor.numpy_sampler()
            if sample is not None:
                noise_np = noise.numpy()
                return lambda t, obs: sample(obs, noise_np[t])
        dev = self.device

        def torch_act(t: int, obs: np.ndarray) -> np.ndarray:
            return actor.act(torch.from_numpy(obs).to(dev), noise[t].to(dev)).cpu().numpy()

        return torch_act

    def _record_episode_ends(self, t: int, dones: np.ndarray, infos: list[dict]) -> None:
        buf = self.buffer
        for i in np.flatnonzero(dones):
            info = infos[i]
            if info.get("TimeLimit.truncated", False):
                buf.truncated[t, i] = True
                buf.final_obs.append((t, int(i), info["terminal_observation"]))
            else:
                buf.terminated[t, i] = True
            episode = info.get("episode")
            if episode is not None:
                self.episode_returns.append(float(episode["r"]))
                self.episode_lengths.append(int(episode["l"]))
                self.episodes += 1

    @torch.no_grad()
    def batch(self, critic: Critic, gamma: float, gae_lambda: float) -> Batch:
        """Values, advantages and returns of the last rollout, flattened to ``(N, ...)``."""
        buf = self.buffer
        t, e = self.n_steps, self.n_envs
        dev = self.device
        values = critic(buf.obs.view(t * e, -1).to(dev)).view(t, e).cpu().numpy()
        last_values = critic(buf.last_obs.to(dev)).cpu().numpy()
        final_values = np.zeros((t, e), dtype=np.float32)
        if buf.final_obs:
            final = torch.as_tensor(np.stack([o for _, _, o in buf.final_obs]), dtype=torch.float32)
            fv = critic(final.view(len(buf.final_obs), -1).to(dev)).cpu().numpy()
            for (step, env, _), v in zip(buf.final_obs, fv):
                final_values[step, env] = v
        nxt = next_state_values(values, last_values, buf.terminated, buf.truncated, final_values)
        adv, ret = compute_gae(
            buf.rewards, values, nxt, buf.terminated | buf.truncated, gamma, gae_lambda
        )
        n = t * e
        return Batch(
            obs=buf.obs.view(n, -1).clone(),
            actions=buf.actions.view(n, *buf.actions.shape[2:]).clone(),
            advantages=torch.from_numpy(adv).view(n),
            returns=torch.from_numpy(ret).view(n),
            values=torch.from_numpy(values).view(n),
        )
