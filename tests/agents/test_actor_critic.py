"""The shared actor-critic gradient equals autograd's, for both network paths and both heads."""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch
from torch import nn

from agents.common.actor_critic import ActorCriticGradient, clip_grad_norm, parse_schedule
from agents.common.networks import Critic, PolicyConfig, make_actor
from agents.ppo import clipped_surrogate, value_loss

SPACES = {
    "box": gym.spaces.Box(-1.0, 1.0, (2,)),
    "discrete": gym.spaces.Discrete(3),
}


def _nets(action: str, activation: str):
    torch.manual_seed(0)
    config = PolicyConfig(pi=(5, 4), vf=(6,), activation=activation, log_std_init=-0.3)
    obs_space = gym.spaces.Box(-1.0, 1.0, (3,))
    actor = make_actor(obs_space, SPACES[action], config).double()
    return actor, Critic(3, config).double()


@pytest.mark.parametrize("action", ["box", "discrete"])
@pytest.mark.parametrize("activation", ["tanh", "relu", "elu"])  # elu: the autograd path
def test_gradient_equals_autograd(action: str, activation: str) -> None:
    actor, critic = _nets(action, activation)
    gen = torch.Generator().manual_seed(2)
    obs = torch.randn(16, 3, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        actions = actor(obs).sample()
    adv, returns = torch.randn(16, generator=gen).double(), torch.randn(16, generator=gen).double()
    old_log_prob = torch.randn(16, generator=gen).double() * 0.1 - 1.0
    old_values = torch.randn(16, generator=gen).double()

    grad = ActorCriticGradient(actor, critic)
    for _ in range(2):  # the second call writes into the first call's gradient tensors
        grad(
            obs,
            actions,
            lambda lp: clipped_surrogate(lp, old_log_prob, adv, 0.2)[:2],
            lambda v: value_loss(v, returns, old_values, 0.3),
            ent_coef=0.01,
            vf_coef=0.5,
            max_grad_norm=None,
        )
    ours = [p.grad.clone() for p in grad.parameters]
    # Plain tensors: a gradient that carries autograd history keeps its graph alive.
    assert not any(p.grad.requires_grad for p in grad.parameters)

    dist = actor(obs)
    ratio = torch.exp(dist.log_prob(actions) - old_log_prob)
    pg = -torch.min(adv * ratio, adv * ratio.clamp(0.8, 1.2)).mean()
    v = critic(obs)
    v_clipped = old_values + (v - old_values).clamp(-0.3, 0.3)
    loss = pg - 0.01 * dist.entropy().mean() + 0.5 * nn.functional.mse_loss(v_clipped, returns)
    reference = torch.autograd.grad(loss, grad.parameters)
    for a, b in zip(ours, reference):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_clipped_surrogate_on_a_constructed_batch() -> None:
    # ratios 1.5, 0.5, 1.05, 0.95 with ε = 0.2 and advantages +1, +1, -2, -2:
    # min(r·A, clip(r)·A) = min(1.5, 1.2), min(0.5, 0.8), min(-2.1, -2.1), min(-1.9, -1.9)
    ratio = torch.tensor([1.5, 0.5, 1.05, 0.95], dtype=torch.float64)
    adv = torch.tensor([1.0, 1.0, -2.0, -2.0], dtype=torch.float64)
    old = torch.zeros(4, dtype=torch.float64)
    loss, d_log_prob, clip_fraction = clipped_surrogate(ratio.log(), old, adv, 0.2)
    assert loss.item() == pytest.approx(-(1.2 + 0.5 - 2.1 - 1.9) / 4, abs=1e-12)
    assert clip_fraction.item() == pytest.approx(0.5)
    # The first sample is clipped (no gradient), the second is not: its term is r·A.
    expected = -torch.tensor([0.0, 0.5, -2.1, -1.9], dtype=torch.float64) / 4
    torch.testing.assert_close(d_log_prob, expected, rtol=0, atol=1e-12)


def test_clip_grad_norm_matches_torch() -> None:
    gen = torch.Generator().manual_seed(3)
    a = [torch.zeros(4, 3, requires_grad=True), torch.zeros(5, requires_grad=True)]
    b = [torch.zeros(4, 3, requires_grad=True), torch.zeros(5, requires_grad=True)]
    for p, q in zip(a, b):
        p.grad = torch.randn(p.shape, generator=gen) * 3
        q.grad = p.grad.clone()
    norm = clip_grad_norm(a, 0.5)
    ref = nn.utils.clip_grad_norm_(b, 0.5)
    assert norm.item() == pytest.approx(ref.item(), rel=1e-6)
    for p, q in zip(a, b):
        torch.testing.assert_close(p.grad, q.grad)


def test_schedules() -> None:
    assert parse_schedule("learning_rate", 3e-4)(0.1) == 3e-4
    assert parse_schedule("learning_rate", "lin_0.001")(0.25) == pytest.approx(2.5e-4)
    for bad in ("lin_", "lin_-1", "exp_0.1", 0.0, -1.0):
        with pytest.raises(ValueError, match="learning_rate must be a positive number"):
            parse_schedule("learning_rate", bad)
