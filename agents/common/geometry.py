"""The geometry of an agent's policy step, measured on every ``geometry_every``-th update.

The same measures for every agent, whatever its metric (Schulman et al. 2015, §6 and appendix
C, for the local model of the surrogate): before the update the base class keeps
``θ_old`` and ``π_old`` on the batch (a :class:`StepProbe`); after it, with
``Δ = θ_new − θ_old`` and ``g = ∇_θ mean[Â·π_θ(a|s)/π_old(a|s)]`` at ``θ_old`` (``Â`` normalised
over the batch), :func:`rl_ig.geometry.measure_step` gives the KL, the Fisher and Euclidean
lengths of ``Δ``, its Fisher cosine to the natural gradient ``(F + λI)⁻¹g``, the predicted gain
``gᵀΔ`` and the top Fisher eigenvalues, all at ``θ_old``; the obtained gain
``mean[(π_new/π_old − 1)·Â]`` and its ratio to the prediction are added.

Measuring draws no random number (the torch global generator, the agent's generator and numpy
are left as they are) and restores the parameters bit for bit, so a run trains the same with
or without it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch.distributions import Distribution
from torch.nn.utils import parameters_to_vector

from agents.common.rollout import Batch
from agents.common.updates import normalize
from rl_ig.fisher import PolicyFisher, detach_distribution
from rl_ig.geometry import at_parameters, gain_ratio, measure_step

if TYPE_CHECKING:
    from agents.common.agent import OnPolicyAgent

DEFAULT_GEOMETRY_EVERY = 10
"""Measure the first update and every 10th after it (under 10% of HalfCheetah update time)."""
CG_ITERS = 10
"""CG iterations of the reference natural gradient."""
CG_DAMPING = 1e-3
"""Its damping ``λ``."""
EIG_K = 3
"""How many top Fisher eigenvalues (``geometry/fisher_eig_1`` …)."""
EIG_ITERS = 20
"""Lanczos steps for them: two thirds of the measuring time at 30; on HalfCheetah (TRPO and PPO
defaults) 20 gave the top two to 1e-6 and the third to 0.1% of their values at 30."""


def check_geometry_every(value: object) -> int:
    """``geometry_every`` as an int ``>= 0``; one-line ``ValueError`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(
            f"geometry_every must be an integer >= 0 (0: never measure), got {value!r}"
        )
    return value


def is_measured(geometry_every: int, n_updates: int) -> bool:
    """Whether the update after ``n_updates`` earlier ones is measured (the first one is)."""
    return geometry_every > 0 and n_updates % geometry_every == 0


@dataclass(frozen=True)
class StepProbe:
    """What a measured update keeps from before its step.

    Attributes:
        obs: the batch's states ``(B, obs_dim)``.
        actions: its actions ``(B, ...)``.
        advantages: ``Â`` normalised over the batch, ``(B,)``.
        theta_old: the actor's flat parameters before the step, ``(n,)``.
        old_dist: ``π_old(·|obs)``, cut from the graph.
    """

    obs: torch.Tensor
    actions: torch.Tensor
    advantages: torch.Tensor
    theta_old: torch.Tensor
    old_dist: Distribution

    @classmethod
    @torch.no_grad()
    def before(cls, fisher: PolicyFisher, batch: Batch) -> StepProbe:
        """Keep ``θ_old`` and ``π_old`` of ``fisher.policy`` on ``batch``."""
        return cls(
            obs=batch.obs,
            actions=batch.actions,
            advantages=normalize(batch.advantages),
            theta_old=parameters_to_vector(fisher.params).clone(),
            old_dist=detach_distribution(fisher.distribution(batch.obs)),
        )


def policy_gradient(fisher: PolicyFisher, probe: StepProbe) -> torch.Tensor:
    """``g = ∇_θ mean[Â·π_θ/π_old]`` at ``θ_old`` (``= mean[Â·∇ log π_θ_old]``), ``(n,)``.

    One forward and one backward pass through ``fisher.policy`` with its parameters set to
    ``θ_old``; parameters the policy does not use get zeros.
    """
    with at_parameters(fisher.params, probe.theta_old), torch.enable_grad():
        log_prob = fisher.distribution(probe.obs).log_prob(probe.actions)
        ratio = torch.exp(log_prob - probe.old_dist.log_prob(probe.actions))
        surrogate = (probe.advantages * ratio).mean()
        grads = torch.autograd.grad(surrogate, fisher.params, allow_unused=True)
    parts = [torch.zeros_like(p) if d is None else d for d, p in zip(grads, fisher.params)]
    return parameters_to_vector(parts)


@torch.no_grad()
def obtained_gain(fisher: PolicyFisher, probe: StepProbe) -> float:
    """``mean[(π_new/π_old − 1)·Â]`` at the policy's current (new) parameters."""
    log_prob = fisher.distribution(probe.obs).log_prob(probe.actions)
    ratio = torch.exp(log_prob - probe.old_dist.log_prob(probe.actions))
    return float(((ratio - 1.0) * probe.advantages).mean())


def measure_update(fisher: PolicyFisher, probe: StepProbe) -> tuple[dict[str, float], torch.Tensor]:
    """The common ``geometry/`` measures of the step from ``probe.theta_old`` to now.

    Returns:
        ``({geometry/kl_mean, kl_max, fisher_norm, euclidean_norm, ng_cosine, predicted_gain,
        fisher_eig_1..3, obtained_gain, gain_ratio}, g)`` with ``g: (n,)`` the policy gradient
        at ``θ_old`` (for an agent's own measures).
    """
    grad = policy_gradient(fisher, probe)
    with torch.no_grad():
        step = parameters_to_vector(fisher.params) - probe.theta_old
    geometry = measure_step(
        fisher,
        probe.obs,
        probe.old_dist,
        probe.theta_old,
        step,
        grad,
        cg_iters=CG_ITERS,
        cg_damping=CG_DAMPING,
        eig_k=EIG_K,
        eig_iters=EIG_ITERS,
    )
    info = geometry.as_dict(prefix="geometry/")
    obtained = obtained_gain(fisher, probe)
    info["geometry/obtained_gain"] = obtained
    info["geometry/gain_ratio"] = gain_ratio(geometry.predicted_gain, obtained)
    return info, grad


def update_with_geometry(
    agent: OnPolicyAgent, batch: Batch
) -> tuple[dict[str, float], float | None]:
    """``agent.update(batch)``, measured when :func:`is_measured` says so.

    Every update's dict gets ``geometry/kl_bound`` (the agent's :meth:`kl_bound`); a measured
    one also the measures of :func:`measure_update` and of the agent's own
    :meth:`~agents.common.agent.OnPolicyAgent.measured_geometry`.

    Returns:
        The update's dict and the seconds spent measuring (None on an unmeasured update).
    """
    if not is_measured(agent.geometry_every, agent.n_updates):
        info = agent.update(batch)
        info["geometry/kl_bound"] = agent.kl_bound()
        return info, None
    start = time.perf_counter()
    probe = StepProbe.before(agent.fisher, batch)
    seconds = time.perf_counter() - start
    info = agent.update(batch)
    info["geometry/kl_bound"] = agent.kl_bound()
    start = time.perf_counter()
    measured, grad = measure_update(agent.fisher, probe)
    info.update(measured)
    info.update(agent.measured_geometry(probe, grad))
    return info, seconds + time.perf_counter() - start
