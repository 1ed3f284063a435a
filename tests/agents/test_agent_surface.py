"""The SB3-style surface: predict, save, load, and the errors a user can hit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import envs
from agents import TRPO, CheckpointError

HP = dict(n_steps=128, batch_size=64, n_critic_updates=1, cg_iters=3)


def test_predict_shapes_and_clipping() -> None:
    agent = TRPO(envs.make_vec_env("Pendulum", n_envs=3, seed=0), seed=0, **HP)
    obs = agent.env.reset()
    actions, state = agent.predict(obs)
    assert state is None and actions.shape == (3, 1)
    assert np.all(np.abs(actions) <= 2.0)
    single, _ = agent.predict(obs[0], deterministic=True)
    assert single.shape == (1,)
    discrete = TRPO(envs.make_vec_env("CartPole", n_envs=2, seed=0), seed=0, **HP)
    acts, _ = discrete.predict(discrete.env.reset(), deterministic=True)
    assert acts.shape == (2,) and set(acts.tolist()) <= {0, 1}


def test_save_load_round_trip(tmp_path: Path) -> None:
    env = envs.make_vec_env("Pendulum", n_envs=2, seed=1, normalize_obs=True)
    agent = TRPO(env, seed=1, **HP).learn(512)
    path = agent.save(tmp_path / "agent.pt")
    loaded = TRPO.load(path)
    assert loaded.num_timesteps == 512 and loaded.n_updates == agent.n_updates
    for a, b in zip(agent.actor.parameters(), loaded.actor.parameters(), strict=True):
        assert torch.equal(a, b)
    norm, loaded_norm = envs.find_vec_normalize(env), envs.find_vec_normalize(loaded.env)
    assert np.array_equal(norm.obs_rms.mean, loaded_norm.obs_rms.mean)
    obs = np.random.default_rng(0).normal(size=(2, 3)).astype(np.float32)
    assert np.array_equal(agent.predict(obs, True)[0], loaded.predict(obs, True)[0])
    assert (
        agent.critic_optimizer.state_dict()["state"][0]["step"]
        == (loaded.critic_optimizer.state_dict()["state"][0]["step"])
    )
    raw = torch.load(path, weights_only=True)  # a checkpoint never needs to run code
    assert raw["format"] == "rl-ig-checkpoint"


def test_load_errors(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(CheckpointError, match="not an rl-ig checkpoint"):
        TRPO.load(foreign)
    with pytest.raises(CheckpointError, match="does not exist"):
        TRPO.load(tmp_path / "missing.pt")
    agent = TRPO(envs.make_vec_env("Pendulum", n_envs=1, seed=0), seed=0, **HP)
    path = agent.save(tmp_path / "a.pt")
    with pytest.raises(CheckpointError, match="observations of shape"):
        TRPO.load(path, env=envs.make_vec_env("CartPole", n_envs=1, seed=0))


def test_constructor_errors() -> None:
    env = envs.make_vec_env("Pendulum", n_envs=1, seed=0)
    with pytest.raises(ValueError, match="seed must be an integer >= 0"):
        TRPO(env, seed=-1)
    with pytest.raises(ValueError, match="device"):
        TRPO(env, device="tpu")
    with pytest.raises(TypeError, match="env must be a VecEnv"):
        TRPO(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="total_timesteps must be >= 1"):
        TRPO(env, **HP).learn(0)
