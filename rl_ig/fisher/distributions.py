"""Analytic Fisher information of action distributions in the coordinates a policy outputs.

The Fisher of the policy is ``F = mean_s J(s)ᵀ F_π(s) J(s)`` where ``J(s)`` is the Jacobian of
the distribution's parameters (its *coordinates*) with respect to the network's parameters and
``F_π(s)`` the Fisher of the distribution family in those coordinates, which is also the
Hessian of ``KL(π_old || π)`` at ``π = π_old``. For the families below ``F_π`` is known in
closed form and cheap to apply, which gives the Gauss-Newton form of the Fisher-vector product.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.distributions import Categorical, Distribution, Independent, Normal

Tensors = tuple[torch.Tensor, ...]


@dataclass(frozen=True)
class AnalyticFisher:
    """Coordinates of a distribution and the map ``u ↦ F_π u`` in those coordinates.

    Attributes:
        coords: the distribution's coordinates, each ``(B, ...)``, still attached to the graph
            that produced them.
        apply: ``F_π`` applied to a tangent vector given as one tensor per coordinate.
    """

    coords: Tensors
    apply: Callable[[Tensors], Tensors]


def _normal(loc: torch.Tensor, scale: torch.Tensor) -> AnalyticFisher:
    # In (μ, σ) coordinates F_π = diag(1/σ², 2/σ²): the Hessian of KL(N(μ₀,σ₀) || N(μ,σ)).
    inv_var = scale.detach().pow(-2)

    def apply(u: Tensors) -> Tensors:
        return (u[0] * inv_var, 2.0 * u[1] * inv_var)

    return AnalyticFisher(coords=(loc, scale), apply=apply)


def _categorical(logits: torch.Tensor) -> AnalyticFisher:
    # In logit coordinates F_π = diag(p) − p pᵀ (softmax is shift-invariant, so torch's
    # normalised logits serve as well as the network's raw ones).
    probs = logits.detach().softmax(dim=-1)

    def apply(u: Tensors) -> Tensors:
        pu = probs * u[0]
        return (pu - probs * pu.sum(dim=-1, keepdim=True),)

    return AnalyticFisher(coords=(logits,), apply=apply)


def analytic_fisher(dist: Distribution) -> AnalyticFisher | None:
    """The analytic Fisher of ``dist`` if its family has one here, else ``None``.

    ``Normal``, ``Independent(Normal)`` and ``Categorical`` are supported; anything else falls
    back to double back-propagation through the KL in :class:`~rl_ig.fisher.PolicyFisher`.
    """
    if isinstance(dist, Independent):
        dist = dist.base_dist
    if type(dist) is Normal:
        return _normal(dist.loc, dist.scale)
    if type(dist) is Categorical:
        return _categorical(dist.logits)
    return None


def per_state_kl(old: Distribution, new: Distribution, n_states: int) -> torch.Tensor:
    """KL(old || new) per state, ``(B,)``: summed over every batch dimension after the first.

    A ``Normal`` of batch shape ``(B, A)`` has independent action dimensions, whose KLs add.
    """
    kl = torch.distributions.kl_divergence(old, new)
    return kl.reshape(n_states, -1).sum(dim=1)


def detach_distribution(dist: Distribution) -> Distribution:
    """A copy of ``dist`` cut from the graph: the *old* policy of a trust-region step.

    Raises:
        TypeError: for a family other than ``Normal``, ``Independent(Normal)`` and
            ``Categorical``; compute the old distribution under ``torch.no_grad()`` instead.
    """
    if isinstance(dist, Independent):
        base = detach_distribution(dist.base_dist)
        return Independent(base, dist.reinterpreted_batch_ndims, validate_args=False)
    if type(dist) is Normal:
        return Normal(dist.loc.detach(), dist.scale.detach(), validate_args=False)
    if type(dist) is Categorical:
        return Categorical(logits=dist.logits.detach(), validate_args=False)
    raise TypeError(
        f"cannot detach a {type(dist).__name__}; build the old distribution under torch.no_grad()"
    )


def sample(dist: Distribution, generator: torch.Generator | None = None) -> torch.Tensor:
    """A detached draw from ``dist``, from ``generator`` where the family allows it.

    ``Normal``/``Independent(Normal)`` draw ``μ + σ·ε`` and ``Categorical`` samples by inverse
    CDF, both from ``generator`` (so a seeded agent is reproducible); other families use
    ``dist.sample()`` and torch's global generator.
    """
    base = dist.base_dist if isinstance(dist, Independent) else dist
    with torch.no_grad():
        if type(base) is Normal:
            eps = torch.randn(
                base.loc.shape, generator=generator, dtype=base.loc.dtype, device=base.loc.device
            )
            return base.loc + base.scale * eps
        if type(base) is Categorical:
            probs = base.probs
            u = torch.rand(
                (*probs.shape[:-1], 1), generator=generator, dtype=probs.dtype, device=probs.device
            )
            return (probs.cumsum(dim=-1) < u).sum(dim=-1).clamp_max(probs.shape[-1] - 1)
        return dist.sample()
