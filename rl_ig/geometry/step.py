"""The common geometry of one policy step, measured in one call for the training log."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.distributions import Distribution

from rl_ig.fisher import PolicyFisher
from rl_ig.geometry._checks import check_int, check_nonnegative, check_obs, check_vector
from rl_ig.geometry.gain import surrogate_gain
from rl_ig.geometry.kl import kl_stats
from rl_ig.geometry.metric import natural_gradient_cosine, step_norms
from rl_ig.geometry.parameters import at_parameters
from rl_ig.geometry.spectrum import top_eigenvalues

_SCALARS = (
    "kl_mean",
    "kl_max",
    "fisher_norm",
    "euclidean_norm",
    "ng_cosine",
    "predicted_gain",
)


@dataclass(kw_only=True, frozen=True)
class StepGeometry:
    """The geometry of a step ``Δ = θ_new − θ_old``; Fisher quantities are taken at ``θ_old``.

    Attributes:
        kl_mean: mean over the states of ``KL(π_old || π_new)``.
        kl_max: max over the states of the same.
        fisher_norm: ``sqrt(ΔᵀFΔ)``.
        euclidean_norm: ``‖Δ‖``.
        ng_cosine: Fisher cosine of ``Δ`` to the (damped, CG) natural gradient; NaN when
            undefined (see :func:`~rl_ig.geometry.fisher_cosine`).
        predicted_gain: ``gᵀΔ``, the linear model's improvement.
        fisher_eigenvalues: the largest eigenvalues of ``F``, descending (empty if not asked).
    """

    kl_mean: float
    kl_max: float
    fisher_norm: float
    euclidean_norm: float
    ng_cosine: float
    predicted_gain: float
    fisher_eigenvalues: tuple[float, ...] = ()

    def as_dict(self, prefix: str = "geometry/") -> dict[str, float]:
        """``{prefix + name: value}``, eigenvalues as ``fisher_eig_1``, ``fisher_eig_2``, …"""
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, got {type(prefix).__name__}")
        out = {prefix + name: float(getattr(self, name)) for name in _SCALARS}
        for i, value in enumerate(self.fisher_eigenvalues, start=1):
            out[f"{prefix}fisher_eig_{i}"] = value
        return out


def measure_step(
    fisher: PolicyFisher,
    obs: torch.Tensor,
    old_dist: Distribution,
    theta_old: torch.Tensor,
    step: torch.Tensor,
    grad: torch.Tensor,
    *,
    cg_iters: int = 10,
    cg_damping: float = 1e-3,
    cg_tol: float = 1e-10,
    eig_k: int = 0,
    eig_iters: int = 30,
) -> StepGeometry:
    """Measure a step that has been taken: the policy's parameters are at ``θ_new`` on entry.

    The KL is evaluated at the current (new) parameters; the Fisher quantities with the
    parameters swapped to ``θ_old`` by :func:`~rl_ig.geometry.at_parameters`, which restores
    them bit for bit. No random-number generator is touched (Lanczos draws from its own).

    Args:
        fisher: the policy's Fisher; ``fisher.params`` define the flat layout.
        obs: the states ``(B, obs_dim)``.
        old_dist: ``π_old`` at ``obs``, cut from the graph.
        theta_old: ``θ_old``, ``(n,)``.
        step: ``Δ = θ_new − θ_old``, ``(n,)``.
        grad: ``g`` at ``θ_old`` of the objective being maximised, ``(n,)``.
        cg_iters: CG iterations of the natural gradient, ``>= 1``.
        cg_damping: its damping ``λ >= 0``.
        cg_tol: its tolerance on the squared residual, ``>= 0``.
        eig_k: how many top Fisher eigenvalues, ``>= 0`` (0: none, and no Lanczos).
        eig_iters: Lanczos steps, ``>= 1``.

    Raises:
        ValueError: for a vector of the wrong length or a setting out of range.
    """
    check_obs(obs)
    for name, v in (("theta_old", theta_old), ("step", step), ("grad", grad)):
        check_vector(name, v, fisher.dim)
    check_int("cg_iters", cg_iters, 1)
    check_nonnegative("cg_damping", cg_damping)
    check_nonnegative("cg_tol", cg_tol)
    check_int("eig_k", eig_k, 0)
    check_int("eig_iters", eig_iters, 1)
    kl_mean, kl_max = kl_stats(fisher, obs, old_dist)
    with at_parameters(fisher.params, theta_old):
        fisher_norm, euclidean_norm = step_norms(fisher, obs, step)
        cosine = natural_gradient_cosine(
            fisher, obs, step, grad, damping=cg_damping, iters=cg_iters, tol=cg_tol
        )
        eigenvalues = top_eigenvalues(fisher, obs, eig_k, eig_iters) if eig_k else None
    return StepGeometry(
        kl_mean=float(kl_mean),
        kl_max=float(kl_max),
        fisher_norm=float(fisher_norm),
        euclidean_norm=float(euclidean_norm),
        ng_cosine=float(cosine),
        predicted_gain=float(surrogate_gain(grad, step)),
        fisher_eigenvalues=() if eigenvalues is None else tuple(eigenvalues.tolist()),
    )
