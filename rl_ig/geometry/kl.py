"""The KL divergence a step actually produced, state by state."""

from __future__ import annotations

import torch
from torch.distributions import Distribution

from rl_ig.fisher import PolicyFisher, per_state_kl
from rl_ig.geometry._checks import check_obs


def kl_stats(
    fisher: PolicyFisher, obs: torch.Tensor, old_dist: Distribution
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and max over the batch of ``KL(π_old(·|s) || π_θ(·|s))`` at the current ``θ``.

    The trust region of TRPO bounds the mean (Schulman et al. 2015, eq. 12); the max is the
    quantity of their theory (eq. 11), which the mean only bounds on average.

    Args:
        fisher: the policy's Fisher, whose ``distribution(obs)`` is ``π_θ``.
        obs: the states ``(B, obs_dim)``.
        old_dist: ``π_old`` at the same states, batch shape ``(B, ...)``, cut from the graph.

    Returns:
        ``(mean, max)``, two detached 0-d tensors.
    """
    check_obs(obs)
    with torch.no_grad():
        kl = per_state_kl(old_dist, fisher.distribution(obs), obs.shape[0])
    return kl.mean(), kl.max()
