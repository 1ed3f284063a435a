"""TRPO: the trust region holds, failed searches restore θ, it learns, it is deterministic."""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils import parameters_to_vector

import envs
from agents import TRPO
from agents.training import evaluate
from rl_ig.fisher import detach_distribution
from rl_ig.geometry import at_parameters


def _agent(env_name: str, **hp) -> TRPO:
    return TRPO(envs.make_vec_env(env_name, n_envs=1, seed=0), seed=0, n_steps=64, **hp)


def _random_batch(agent: TRPO, n: int, gen: torch.Generator):
    obs = torch.randn(n, agent.env.observation_space.shape[0], generator=gen) * 2
    with torch.no_grad():
        actions = agent.actor(obs).sample()
    adv = torch.randn(n, generator=gen)
    return obs, actions, adv


@pytest.mark.parametrize(
    "env_name,max_kl", [("Pendulum", 0.01), ("CartPole", 0.005), ("Pendulum", 0.1)]
)
def test_no_accepted_step_exceeds_max_kl(env_name: str, max_kl: float) -> None:
    agent = _agent(env_name, max_kl=max_kl, cg_iters=10)
    gen = torch.Generator().manual_seed(0)
    accepted = 0
    for _ in range(40):
        obs, actions, adv = _random_batch(agent, 256, gen)
        with torch.no_grad():
            old = detach_distribution(agent.actor(obs))
        theta_old = parameters_to_vector(agent.actor.parameters()).detach().clone()
        info = agent.policy_step(obs, actions, adv)
        theta_new = parameters_to_vector(agent.actor.parameters()).detach()
        with torch.no_grad():
            kl = torch.distributions.kl_divergence(old, agent.actor(obs)).mean().item()
        if info["train/is_line_search_success"]:
            accepted += 1
            assert 0.0 < kl <= max_kl
            assert kl == pytest.approx(info["train/kl_divergence_loss"], rel=1e-6)
        else:
            assert torch.equal(theta_new, theta_old)
    assert accepted >= 30  # the test must exercise accepted steps, not only rejections


def test_fisher_norm_of_accepted_step_is_exact() -> None:
    agent = _agent("Pendulum", max_kl=0.02, cg_iters=10)
    gen = torch.Generator().manual_seed(1)
    obs, actions, adv = _random_batch(agent, 256, gen)
    theta_old = parameters_to_vector(agent.actor.parameters()).detach().clone()
    info = agent.policy_step(obs, actions, adv)
    step = parameters_to_vector(agent.actor.parameters()).detach() - theta_old
    assert info["train/is_line_search_success"] == 1.0
    # The line search writes θ in place, so the Fisher at θ_old is taken with θ_old swapped in.
    with at_parameters(agent.fisher.params, theta_old):
        exact = agent.fisher.fisher_norm(obs, step).item()
    assert info["train/fisher_norm"] == pytest.approx(exact, rel=1e-3)


def test_line_search_rejects_when_no_step_improves() -> None:
    # With zero advantages no step improves the surrogate: θ must come back unchanged.
    agent = _agent("Pendulum", max_kl=0.01)
    gen = torch.Generator().manual_seed(2)
    obs, actions, _ = _random_batch(agent, 128, gen)
    adv = torch.randn(128, generator=gen) * 1e-12
    theta_old = parameters_to_vector(agent.actor.parameters()).detach().clone()
    info = agent.policy_step(obs, actions, adv - adv)
    assert info["train/is_line_search_success"] == 0.0
    assert torch.equal(parameters_to_vector(agent.actor.parameters()).detach(), theta_old)


def _evaluate(agent: TRPO, env_name: str, episodes: int) -> float:
    return evaluate(agent, envs.make_vec_env(env_name, n_envs=1, seed=123), episodes).mean_reward


LEARN_HP = dict(n_steps=512, batch_size=128, max_kl=0.02, cg_iters=15, n_critic_updates=10)


@pytest.mark.slow
def test_trpo_learns_inverted_pendulum() -> None:
    # Stated target: a deterministic return of at least 500 (of 1000) after 40,960 steps.
    agent = TRPO(envs.make_vec_env("InvertedPendulum", n_envs=2, seed=0), seed=0, **LEARN_HP)
    start = _evaluate(agent, "InvertedPendulum", 3)
    agent.learn(40_960)
    final = _evaluate(agent, "InvertedPendulum", 5)
    assert start < 100
    assert final >= 500


def test_same_seed_same_returns() -> None:
    def run() -> tuple[list[float], torch.Tensor]:
        hp = {**LEARN_HP, "n_steps": 256, "n_critic_updates": 3}
        agent = TRPO(envs.make_vec_env("Pendulum", n_envs=2, seed=3), seed=3, **hp)
        agent.learn(5 * 512)
        returns = list(agent.collector.episode_returns)
        return returns, parameters_to_vector(agent.actor.parameters()).detach()

    (r1, p1), (r2, p2) = run(), run()
    assert len(r1) == 12  # 2 envs x 2,560 steps / 200-step episodes
    assert r1 == r2
    assert torch.equal(p1, p2)


def test_bad_hyperparameters_have_one_line_messages() -> None:
    env = envs.make_vec_env("Pendulum", n_envs=1, seed=0)
    cases = [
        ({"max_kl": 0.0}, ValueError, r"max_kl must be in \(0"),
        ({"n_steps": 0}, ValueError, "n_steps must be an integer >= 1"),
        ({"n_steps": "abc"}, TypeError, "n_steps must be an integer"),
        ({"gamma": 1.5}, ValueError, r"gamma must be in \(0"),
        ({"max_kll": 0.1}, ValueError, "unknown hyperparameter 'max_kll'.*did you mean max_kl"),
        ({"policy": {"pi": [0]}}, ValueError, "policy pi must be a list of layer sizes"),
    ]
    for hp, exc, pattern in cases:
        with pytest.raises(exc, match=pattern):
            TRPO(env, **hp)


def test_zoo_aliases_are_accepted() -> None:
    agent = TRPO(
        envs.make_vec_env("Pendulum", n_envs=1, seed=0),
        target_kl=0.03,
        cg_max_steps=7,
        policy_kwargs={"net_arch": {"pi": [32], "vf": [16]}, "activation_fn": "nn.ReLU"},
    )
    assert agent.config.max_kl == 0.03 and agent.config.cg_iters == 7
    assert agent.config.policy.pi == (32,) and agent.config.policy.activation == "relu"
