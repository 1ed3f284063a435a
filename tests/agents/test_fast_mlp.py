"""The hand-derived MLP gradients against autograd, float64."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from agents.common import fast_mlp
from agents.common.networks import Critic, PolicyConfig
from agents.common.rollout import Batch
from agents.common.updates import critic_epochs


@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("hidden", [(), (7,), (6, 5)])
def test_mse_grads_equal_autograd(activation: str, hidden: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    critic = Critic(4, PolicyConfig(vf=hidden, activation=activation)).double()
    x, y = torch.randn(13, 4, dtype=torch.float64), torch.randn(13, dtype=torch.float64)
    layers = fast_mlp.as_layers(critic.net)
    assert layers is not None
    loss, grads = fast_mlp.mse_step_grads(layers, x, y)
    ref = nn.functional.mse_loss(critic(x), y)
    ref_grads = torch.autograd.grad(ref, list(critic.net.parameters()))
    torch.testing.assert_close(loss, ref.detach(), rtol=1e-12, atol=1e-14)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-13)


def test_unsupported_layers_fall_back_to_autograd() -> None:
    assert fast_mlp.as_layers(nn.Sequential(nn.Linear(2, 3), nn.ELU(), nn.Linear(3, 1))) is None


@pytest.mark.parametrize("activation", ["tanh", "elu"])
def test_critic_epochs_fast_and_autograd_paths_agree(activation: str) -> None:
    # Same start, same minibatches: the fast path and plain autograd give the same critic.
    def train(force_autograd: bool) -> torch.Tensor:
        torch.manual_seed(1)
        critic = Critic(3, PolicyConfig(vf=(8, 8), activation=activation)).double()
        net = critic.net
        if force_autograd:
            critic.net = nn.Sequential(*net, nn.Identity())  # not a pure Linear/Tanh stack
        opt = torch.optim.Adam(critic.parameters(), lr=1e-2)
        n = 64
        batch = Batch(
            obs=torch.randn(n, 3, dtype=torch.float64),
            actions=torch.zeros(n),
            advantages=torch.zeros(n),
            returns=torch.randn(n, dtype=torch.float64),
            values=torch.zeros(n),
        )
        critic_epochs(critic, opt, batch, 16, 3, torch.Generator().manual_seed(0))
        return torch.cat([p.detach().reshape(-1) for p in critic.parameters()])

    torch.testing.assert_close(train(False), train(True), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("activation", ["tanh", "relu", "elu"])
def test_actor_act_equals_distribution_mean(activation: str) -> None:
    import gymnasium as gym

    from agents.common.networks import make_actor

    torch.manual_seed(2)
    box = gym.spaces.Box(-1.0, 1.0, (3,))
    actor = make_actor(gym.spaces.Box(-5.0, 5.0, (4,)), box, PolicyConfig(activation=activation))
    obs = torch.randn(9, 4)
    noise = torch.randn(9, 3)
    dist = actor(obs).base_dist
    torch.testing.assert_close(actor.act(obs, None), dist.mean, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(
        actor.act(obs, noise), dist.mean + dist.stddev * noise, rtol=1e-6, atol=1e-7
    )


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_numpy_samplers_equal_torch_act(activation: str) -> None:
    import gymnasium as gym

    from agents.common.networks import make_actor

    torch.manual_seed(3)
    obs_space = gym.spaces.Box(-5.0, 5.0, (4,))
    gen = torch.Generator().manual_seed(0)
    obs = torch.randn(64, 4)
    config = PolicyConfig(activation=activation, log_std_init=-0.3)
    gaussian = make_actor(obs_space, gym.spaces.Box(-1.0, 1.0, (3,)), config)
    noise = gaussian.noise((64,), gen)
    sample = gaussian.numpy_sampler()
    np_actions = sample(obs.numpy(), noise.numpy())
    torch.testing.assert_close(
        torch.from_numpy(np_actions), gaussian.act(obs, noise), rtol=1e-5, atol=1e-6
    )
    categorical = make_actor(obs_space, gym.spaces.Discrete(5), config)
    uniform = categorical.noise((64,), gen)
    np_choice = categorical.numpy_sampler()(obs.numpy(), uniform.numpy())
    assert np.array_equal(np_choice, categorical.act(obs, uniform).numpy())


def test_numpy_sampler_falls_back_for_other_layers() -> None:
    import gymnasium as gym

    from agents.common.networks import make_actor

    actor = make_actor(
        gym.spaces.Box(-1.0, 1.0, (2,)),
        gym.spaces.Box(-1.0, 1.0, (1,)),
        PolicyConfig(activation="elu"),
    )
    assert actor.numpy_sampler() is None


def test_sigmoid_form_of_tanh_is_accurate_in_float32() -> None:
    layer = fast_mlp.Layer(torch.eye(4), torch.zeros(4), "tanh")
    z = torch.linspace(-12.0, 12.0, 100_000).reshape(-1, 4)
    out, _ = fast_mlp.forward([layer], z)
    assert (out - torch.tanh(z)).abs().max().item() <= 2.4e-7
