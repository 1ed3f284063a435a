"""What every agent shares: the update dict, determinism and a state that resumes exactly."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch.nn.utils import parameters_to_vector

import envs
from agents import ALGOS, OnPolicyAgent

SMALL = {
    "trpo": dict(n_steps=64, batch_size=64, n_critic_updates=2, cg_iters=5),
    "npg": dict(n_steps=64, batch_size=64, n_critic_updates=2, cg_iters=5, step_size=0.05),
    "ppo": dict(n_steps=64, batch_size=32, n_epochs=2),
    "acktr": dict(n_steps=16, inverse_update_freq=2),
    "a2c": dict(n_steps=16),
}


def _agent(algo: str, env: str = "Pendulum", seed: int = 0) -> OnPolicyAgent:
    small = {**SMALL[algo], "policy": {"pi": [16, 16], "vf": [16, 16]}}
    return ALGOS[algo](envs.make_vec_env(env, n_envs=2, seed=seed), seed=seed, **small)


def _flat(agent: OnPolicyAgent) -> torch.Tensor:
    params = [*agent.actor.parameters(), *agent.critic.parameters()]
    return parameters_to_vector(params).detach().clone()


def test_every_algorithm_is_registered() -> None:
    assert set(ALGOS) == {"trpo", "npg", "ppo", "acktr", "a2c"}


@pytest.mark.parametrize("algo", sorted(SMALL))
@pytest.mark.parametrize("env", ["Pendulum", "CartPole"])
def test_update_dict_carries_the_step_geometry(algo: str, env: str) -> None:
    agent = _agent(algo, env)
    infos = []
    agent.learn(4 * SMALL[algo]["n_steps"] * 2, callback=lambda a, info: infos.append(info))
    for info in infos:
        assert all(isinstance(v, float) for v in info.values())
        assert info["train/kl"] >= 0.0 and math.isfinite(info["train/kl"])
        assert info["train/fisher_norm"] >= 0.0 and math.isfinite(info["train/fisher_norm"])
    # KL ≈ ½·(Fisher norm)² for small steps: the two measurements describe the same step.
    small = [i for i in infos if 0 < i["train/fisher_norm"] < 0.1]
    for info in small:
        assert info["train/kl"] == pytest.approx(0.5 * info["train/fisher_norm"] ** 2, rel=0.1)


@pytest.mark.parametrize("algo", sorted(SMALL))
def test_same_seed_same_trajectory(algo: str) -> None:
    def run() -> tuple[list[float], torch.Tensor]:
        agent = _agent(algo, seed=5)
        agent.learn(max(8 * SMALL[algo]["n_steps"] * 2, 512))  # two 200-step episodes
        return list(agent.collector.episode_returns), _flat(agent)

    (r1, p1), (r2, p2) = run(), run()
    assert r1 and r1 == r2
    assert torch.equal(p1, p2)


@pytest.mark.parametrize("algo", sorted(SMALL))
def test_state_dict_resumes_the_update_exactly(algo: str) -> None:
    agent = _agent(algo, seed=2)
    agent.learn(6 * SMALL[algo]["n_steps"] * 2)
    agent.collector.collect(agent.actor, agent.generator)
    batch = agent.collector.batch(agent.critic, agent.config.gamma, agent.config.gae_lambda)
    twin = _agent(algo, seed=9)  # different initial weights and RNG, overwritten by the state
    buffer = io.BytesIO()
    torch.save(agent.state_dict(), buffer)
    buffer.seek(0)
    twin.load_state_dict(torch.load(buffer, weights_only=True))
    assert torch.equal(_flat(agent), _flat(twin))
    for a in (agent, twin):
        a.progress_remaining = 0.5
        a.update(batch)
    assert torch.equal(_flat(agent), _flat(twin))
