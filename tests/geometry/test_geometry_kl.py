"""kl_stats against per-state KLs from torch.distributions.kl_divergence."""

from __future__ import annotations

import pytest
import torch
from geometry_reference import N_STATES, make, randn
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from rl_ig.fisher import PolicyFisher, detach_distribution
from rl_ig.geometry import kl_stats

TOL = {"rtol": 1e-12, "atol": 1e-15}


@pytest.mark.parametrize("kind", ["gaussian", "categorical"])
def test_kl_stats_are_mean_and_max_of_per_state_kl(kind: str) -> None:
    policy, obs = make(kind, seed=1)
    fisher = PolicyFisher(policy)
    old = detach_distribution(policy(obs))
    with torch.no_grad():
        theta = parameters_to_vector(policy.parameters())
        vector_to_parameters(theta + 0.2 * randn(theta.numel(), seed=2), policy.parameters())
        expected = torch.distributions.kl_divergence(old, policy(obs))
    assert expected.shape == (N_STATES,)
    mean, largest = kl_stats(fisher, obs, old)
    torch.testing.assert_close(mean, expected.mean(), **TOL)
    torch.testing.assert_close(largest, expected.max(), **TOL)
    assert largest > mean > 0  # the states differ, so the max is not the mean


def test_kl_stats_are_detached_and_zero_at_the_old_point() -> None:
    policy, obs = make("gaussian")
    old = detach_distribution(policy(obs))
    mean, largest = kl_stats(PolicyFisher(policy), obs, old)
    assert not mean.requires_grad and not largest.requires_grad
    assert mean.item() == 0.0 and largest.item() == 0.0
