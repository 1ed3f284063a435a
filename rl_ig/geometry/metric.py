"""Lengths and angles of a parameter step in the Fisher metric of its policy.

With ``F = mean_s J(s)ᵀ F_π(s) J(s)`` the policy Fisher at ``θ_old`` (see
:class:`~rl_ig.fisher.PolicyFisher`), ``⟨x, y⟩_F = xᵀ F y`` is the inner product of the
statistical manifold's tangent space and ``½ ΔᵀFΔ`` the KL a small step ``Δ`` causes to second
order (Amari 1998; Kakade 2001). Every function here evaluates ``F`` at the policy's *current*
parameters: wrap the call in :func:`~rl_ig.geometry.at_parameters` to measure at ``θ_old``.
"""

from __future__ import annotations

import math

import torch

from rl_ig.fisher import PolicyFisher
from rl_ig.geometry._checks import check_nonnegative, check_obs, check_vector


def step_norms(
    fisher: PolicyFisher, obs: torch.Tensor, step: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sqrt(ΔᵀFΔ), ‖Δ‖)``: the step's length in the Fisher and in the Euclidean metric.

    Args:
        fisher: the policy's Fisher.
        obs: the states ``(B, obs_dim)`` ``F`` averages over.
        step: ``Δ = θ_new − θ_old``, ``(n,)``.

    Returns:
        Two 0-d tensors; the first is ``sqrt(2·KL)`` of the quadratic KL model.
    """
    check_obs(obs)
    check_vector("step", step, fisher.dim)
    return fisher.fisher_norm(obs, step), torch.linalg.vector_norm(step)


def natural_gradient(
    fisher: PolicyFisher,
    obs: torch.Tensor,
    grad: torch.Tensor,
    damping: float = 1e-3,
    iters: int = 10,
    tol: float = 1e-10,
) -> torch.Tensor:
    """The natural gradient ``(F + damping·I)⁻¹ g`` by conjugate gradient.

    A thin wrapper over :meth:`PolicyFisher.solve`: at most ``iters`` Fisher-vector products,
    stopping once the squared residual is ``<= tol``.

    Args:
        fisher: the policy's Fisher.
        obs: the states ``(B, obs_dim)``.
        grad: ``g``, ``(n,)``.
        damping: ``λ >= 0``; CG needs ``λ > 0`` where ``F`` is singular along ``g``.
        iters: CG iterations, ``>= 1``.
        tol: tolerance on the squared residual, ``>= 0``.

    Returns:
        The direction ``(n,)``.
    """
    check_obs(obs)
    check_vector("grad", grad, fisher.dim)
    check_nonnegative("damping", damping)
    return fisher.solve(obs, grad, damping=damping, iters=iters, tol=tol)


def fisher_cosine(
    fisher: PolicyFisher, obs: torch.Tensor, step: torch.Tensor, direction: torch.Tensor
) -> torch.Tensor:
    """``⟨Δ, d⟩_F / (‖Δ‖_F ‖d‖_F)``, with ``⟨x, y⟩_F = xᵀFy`` and the undamped, exact ``F``.

    The cosine of the angle between a step and a direction as the policy sees it: 1 when the
    step moves the action distributions the way ``d`` does, whatever its Euclidean direction.

    Args:
        fisher: the policy's Fisher.
        obs: the states ``(B, obs_dim)``.
        step: ``Δ``, ``(n,)``.
        direction: ``d``, ``(n,)``, e.g. the natural gradient.

    Returns:
        A 0-d tensor in ``[-1, 1]``, or NaN when ``Δ`` or ``d`` has zero Fisher length
        (``xᵀFx <= 0`` as computed, e.g. a zero vector): such a vector changes no action
        distribution to first order, so it has no angle in the metric. (A vector only
        numerically in the null space of ``F`` gets a cosine dominated by round-off.)
    """
    check_obs(obs)
    check_vector("step", step, fisher.dim)
    check_vector("direction", direction, fisher.dim)
    f_direction = fisher.fvp(obs, direction)
    inner = torch.dot(step, f_direction)
    squared = torch.dot(step, fisher.fvp(obs, step)) * torch.dot(direction, f_direction)
    if not squared.item() > 0.0:
        return torch.full_like(inner, math.nan)
    return (inner / squared.sqrt()).clamp(-1.0, 1.0)


def natural_gradient_cosine(
    fisher: PolicyFisher,
    obs: torch.Tensor,
    step: torch.Tensor,
    grad: torch.Tensor,
    damping: float = 1e-3,
    iters: int = 10,
    tol: float = 1e-10,
) -> torch.Tensor:
    """The Fisher cosine of ``Δ`` to the natural gradient ``(F + damping·I)⁻¹ g`` (by CG).

    1 for a TRPO/NPG step solved to the same accuracy; for a PPO or Adam step, how far its
    geometry is from the natural one. ``g`` is the gradient of the objective being maximised,
    so that a descent step on a loss compares with ``g = −∇loss``.

    Args:
        fisher: the policy's Fisher.
        obs: the states ``(B, obs_dim)``.
        step: ``Δ = θ_new − θ_old``, ``(n,)``.
        grad: ``g``, ``(n,)``.
        damping: CG damping ``λ >= 0``.
        iters: CG iterations, ``>= 1``.
        tol: CG tolerance on the squared residual, ``>= 0``.

    Returns:
        A 0-d tensor, NaN as in :func:`fisher_cosine`.
    """
    check_vector("step", step, fisher.dim)
    direction = natural_gradient(fisher, obs, grad, damping=damping, iters=iters, tol=tol)
    return fisher_cosine(fisher, obs, step, direction)
