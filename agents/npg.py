"""Natural Policy Gradient (Kakade 2001): TRPO's direction with a fixed step size.

The same surrogate, the same exact Fisher-vector products and the same conjugate-gradient
solve as :mod:`agents.trpo`; the step is ``θ ← θ + step_size · s`` with ``s ≈ (F + λI)⁻¹ g``,
with no KL scaling and no line search. The KL of each step is measured and reported, not
enforced, which is what sets NPG apart from TRPO in a comparison of update geometries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import gymnasium as gym
import torch
from torch.nn.utils import parameters_to_vector

from agents.common.config import check_positive_int, check_range
from agents.common.networks import PolicyConfig, policy_std
from agents.common.updates import assign_parameters, step_geometry
from agents.trpo import TRPO
from rl_ig.fisher import detach_distribution


@dataclass(kw_only=True, frozen=True)
class NPGConfig:
    """NPG hyperparameters; those shared with TRPO mean the same (see :class:`TRPOConfig`).

    Attributes:
        step_size: η in ``θ ← θ + η·(F + λI)⁻¹g``.
    """

    n_steps: int = 2048
    batch_size: int = 128
    gamma: float = 0.99
    gae_lambda: float = 0.95
    step_size: float = 0.1
    cg_iters: int = 15
    cg_damping: float = 0.1
    cg_tol: float = 1e-10
    n_critic_updates: int = 10
    learning_rate: float = 1e-3
    normalize_advantage: bool = True
    sub_sampling_factor: int = 1
    policy: PolicyConfig = field(default_factory=PolicyConfig)

    def __post_init__(self) -> None:
        for name in ("n_steps", "batch_size", "cg_iters", "n_critic_updates"):
            check_positive_int(name, getattr(self, name))
        check_positive_int("sub_sampling_factor", self.sub_sampling_factor)
        check_range("gamma", self.gamma, 0.0, 1.0, open_low=True)
        check_range("gae_lambda", self.gae_lambda, 0.0, 1.0)
        for name in ("step_size", "learning_rate"):
            check_range(name, getattr(self, name), 0.0, math.inf, open_low=True, open_high=True)
        check_range("cg_damping", self.cg_damping, 0.0, math.inf, open_high=True)
        check_range("cg_tol", self.cg_tol, 0.0, math.inf, open_high=True)


class NPG(TRPO):
    """NPG: a fixed-size step along the exact natural gradient.

    Example:
        >>> agent = NPG(envs.make_vec_env("Pendulum", n_envs=2), step_size=0.05, seed=0)
        >>> agent.learn(50_000)
    """

    algo: ClassVar[str] = "npg"
    config_class: ClassVar[type] = NPGConfig
    aliases: ClassVar[dict[str, str]] = {"cg_max_steps": "cg_iters", "policy_kwargs": "policy"}
    conventions: ClassVar[dict[str, str]] = {}
    config: NPGConfig  # type: ignore[assignment]

    @classmethod
    def resolve_hyperparameters(cls, hp: dict[str, Any], action_space: gym.Space) -> dict[str, Any]:
        return dict(hp)

    def kl_bound(self) -> float:
        return math.nan  # the KL is measured, not enforced

    @staticmethod
    def search_geometry(info: dict[str, float]) -> dict[str, float]:
        """No line search: no backtracks, the whole step ``η·s`` taken."""
        return {"geometry/backtracks": 0.0, "geometry/accepted_fraction": 1.0}

    def policy_step(
        self, obs: torch.Tensor, actions: torch.Tensor, adv: torch.Tensor
    ) -> dict[str, float]:
        """Surrogate gradient, CG direction, and the step ``η·s`` taken as it is."""
        dist, old_log_prob, surrogate, g, direction, s_f_s = self._natural_direction(
            obs, actions, adv
        )
        old_dist = detach_distribution(dist)
        theta_old = parameters_to_vector(self.fisher.params).detach()
        with torch.no_grad():
            step = self.config.step_size * direction
            assign_parameters(self.fisher.params, theta_old + step)
            new_log_prob = self.actor(obs).log_prob(actions)
            gain = self._surrogate(new_log_prob, old_log_prob, adv) - surrogate
        info = step_geometry(self.fisher, obs, old_dist, theta_old)
        info.update(
            {
                "train/policy_objective": surrogate.item(),
                "train/surrogate_gain": gain.item(),
                "train/predicted_kl": 0.5 * self.config.step_size**2 * s_f_s.item(),
                "train/grad_norm": g.norm().item(),
                "train/entropy": dist.entropy().mean().item(),
                "train/std": policy_std(self.actor),
            }
        )
        return info
