"""The compiled actor-critic gradient (``compile=True``) computes what the eager one does."""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch
import torch._dynamo
import torch._dynamo.utils

import envs
from agents import PPO
from agents.common.actor_critic import ActorCriticGradient
from agents.common.networks import Critic, PolicyConfig, make_actor
from agents.ppo import clipped_surrogate, value_loss

SPACES = {"box": gym.spaces.Box(-1.0, 1.0, (2,)), "discrete": gym.spaces.Discrete(3)}


def _gradient(action: str, compile: bool) -> ActorCriticGradient:
    torch.manual_seed(0)
    config = PolicyConfig(pi=(8, 8), vf=(8, 8), activation="relu", log_std_init=-0.5)
    actor = make_actor(gym.spaces.Box(-1.0, 1.0, (3,)), SPACES[action], config)
    return ActorCriticGradient(actor, Critic(3, config), compile=compile)


def _evaluate(grad: ActorCriticGradient, seed: int) -> tuple[list[torch.Tensor], torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    obs = torch.randn(16, 3, generator=gen)
    torch.manual_seed(seed)
    with torch.no_grad():
        actions = grad.actor(obs).sample()
    adv, returns, old_values = (torch.randn(16, generator=gen) for _ in range(3))
    old_log_prob = torch.randn(16, generator=gen) * 0.1 - 1.0
    clip = torch.tensor(0.2)
    losses = grad(
        obs,
        actions,
        lambda lp: clipped_surrogate(lp, old_log_prob, adv, clip)[:2],
        lambda v: value_loss(v, returns, old_values, 0.3),
        ent_coef=0.01,
        vf_coef=0.5,
        max_grad_norm=0.05,  # small enough that the clip binds
    )
    return [p.grad.clone() for p in grad.parameters], losses.grad_norm


@pytest.mark.parametrize("action", ["box", "discrete"])
def test_compiled_gradient_equals_eager(action: str) -> None:
    eager, compiled = _gradient(action, False), _gradient(action, True)
    for seed in (1, 2):  # the second call reuses the compiled graph and the gradient buffers
        ours, our_norm = _evaluate(compiled, seed)
        ref, ref_norm = _evaluate(eager, seed)
        torch.testing.assert_close(our_norm, ref_norm, rtol=1e-5, atol=1e-7)
        assert ref_norm.item() > 0.05
        for a, b in zip(ours, ref):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_without_a_cxx_compiler_the_gradient_runs_eagerly_with_a_warning() -> None:
    import torch._inductor.config as inductor_config

    torch._dynamo.reset()
    fallback, eager = _gradient("box", True), _gradient("box", False)
    no_compiler = {"cpp.cxx": ("/nonexistent/c++",), "fx_graph_cache": False}
    with (
        inductor_config.patch(no_compiler),
        pytest.warns(RuntimeWarning, match="torch.compile failed .*C\\+\\+ compiler.*eagerly"),
    ):
        ours, _ = _evaluate(fallback, 1)
    for a, b in zip(ours, _evaluate(eager, 1)[0]):
        assert torch.equal(a, b)
    torch._dynamo.reset()


def test_ppo_compiles_once_per_minibatch_shape_with_a_scheduled_clip_range() -> None:
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    env = envs.make_vec_env("Pendulum", n_envs=1, seed=0)
    agent = PPO(env, n_steps=80, batch_size=32, n_epochs=2, clip_range="lin_0.2", compile=True)
    agent.learn(400)  # five updates, each with a different ε; minibatches of 32, 32 and 16
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 2
