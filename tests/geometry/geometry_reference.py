"""Tiny float64 policies and dense references (a Fisher from Jacobians) for the geometry tests."""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Categorical, Distribution, Independent, Normal
from torch.func import functional_call, jacrev
from torch.nn.utils import parameters_to_vector

OBS_DIM, ACT_DIM, N_STATES, HIDDEN = 3, 2, 6, 4


class GaussianPolicy(nn.Module):
    """Tanh-MLP mean and a state-independent log-std."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(OBS_DIM, HIDDEN), nn.Tanh(), nn.Linear(HIDDEN, ACT_DIM))
        self.log_std = nn.Parameter(0.3 * torch.randn(ACT_DIM))

    def forward(self, obs: torch.Tensor) -> Distribution:
        scale = self.log_std.exp().expand(obs.shape[0], ACT_DIM)
        return Independent(Normal(self.net(obs), scale), 1)


class CategoricalPolicy(nn.Module):
    """Tanh-MLP logits over four actions."""

    def __init__(self, n_actions: int = 4) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(OBS_DIM, HIDDEN), nn.Tanh(), nn.Linear(HIDDEN, n_actions)
        )

    def forward(self, obs: torch.Tensor) -> Distribution:
        return Categorical(logits=self.net(obs))


POLICIES = {"gaussian": GaussianPolicy, "categorical": CategoricalPolicy}


def make(kind: str, seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    """A policy of ``kind`` and ``N_STATES`` states, both seeded."""
    torch.manual_seed(seed)
    policy = POLICIES[kind]()
    return policy, torch.randn(N_STATES, OBS_DIM)


def flat(policy: nn.Module) -> torch.Tensor:
    return parameters_to_vector(policy.parameters()).detach().clone()


def _coordinates(dist: Distribution) -> torch.Tensor:
    base = dist.base_dist if isinstance(dist, Independent) else dist
    if isinstance(base, Normal):
        return torch.cat([base.loc, base.scale], dim=-1)
    assert isinstance(base, Categorical)
    return base.logits


def _metric(dist: Distribution) -> torch.Tensor:
    """``F_π(s)`` per state in the coordinates of :func:`_coordinates`: ``(B, k, k)``."""
    base = dist.base_dist if isinstance(dist, Independent) else dist
    if isinstance(base, Normal):
        inv_var = base.scale.pow(-2)
        return torch.diag_embed(torch.cat([inv_var, 2.0 * inv_var], dim=-1))
    p = base.probs
    return torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-2)


def dense_fisher(policy: nn.Module, obs: torch.Tensor) -> torch.Tensor:
    """``F = mean_s J(s)ᵀ F_π(s) J(s)`` with ``J`` from ``jacrev``: ``(n, n)``."""
    names = [name for name, _ in policy.named_parameters()]
    shapes = [p.shape for p in policy.parameters()]

    def coordinates(theta: torch.Tensor) -> torch.Tensor:
        chunks = theta.split([s.numel() for s in shapes])
        values = {n: c.view(s) for n, c, s in zip(names, chunks, shapes)}
        return _coordinates(functional_call(policy, values, (obs,)))

    jac = jacrev(coordinates)(flat(policy))  # (B, k, n)
    with torch.no_grad():
        metric = _metric(policy(obs))
    return torch.einsum("bkn,bkl,blm->nm", jac, metric, jac) / obs.shape[0]


def randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))
