"""ACKTR (Wu et al. 2017): a synchronous actor-critic whose actor and critic steps are both
preconditioned by K-FAC (:class:`rl_ig.optim.KFAC`), each inside a KL trust region.

Each update, on ``n_envs × n_steps`` transitions with GAE advantages:

1. ``actor_step``: the sampled-Fisher backward ``−mean log π(ã|s)``, ``ã ~ π`` (the *true*
   Fisher, through ``PolicyFisher.sampled_fisher_loss``) gives the actor's ``G`` factors; then
   the policy-gradient loss ``−mean[Â·log π(a|s)] − ent_coef·H`` gives ``g``, and K-FAC steps
   along ``Δ = F̂⁻¹g``, scaled by the KL clip

       ν = min(1, sqrt(2·max_kl / (lr² · Δᵀ F̂ Δ)))

   so that the quadratic model of the step's KL, ``½·(ν·lr)²·ΔᵀF̂Δ``, is at most ``max_kl``.
   ``F̂`` is the damped K-FAC Fisher, and ``ΔᵀF̂Δ = Δᵀg``. A Gaussian policy's ``log_std`` is
   outside the Kronecker layers; its exact Fisher block, ``2·I``, preconditions it and enters
   the same quadratic.
2. ``critic_step``: the value output is read as the mean of ``N(V(s), 1)``, whose Fisher is
   the Gauss-Newton matrix; a sampled target ``ṽ = V + ε`` gives the critic's ``G`` factors,
   and K-FAC steps on ``½·mean[(R − V)²]`` with the critic's own learning rate, damping, KL
   clip and factor decay (the original continuous-control ACKTR kept them separate; sharing
   them made the later refactor underperform).
3. ``adapt_step_size`` (optional): with ``target_kl``, the actor's learning rate is divided by
   1.5 after a step whose measured KL exceeds ``2·target_kl`` and multiplied by 1.5 after one
   below ``target_kl/2`` (the continuous-control ACKTR's rule).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch.nn.utils import parameters_to_vector

from agents.common.actor_critic import parse_schedule
from agents.common.agent import OnPolicyAgent
from agents.common.config import check_positive_int, check_range
from agents.common.geometry import StepProbe
from agents.common.networks import GaussianActor, PolicyConfig, policy_std
from agents.common.rollout import Batch
from agents.common.updates import explained_variance, normalize, step_geometry
from rl_ig.fisher import PolicyFisher, detach_distribution
from rl_ig.geometry import (
    at_parameters,
    factor_condition_numbers,
    kfac_flat_direction,
    kfac_relative_error,
    natural_gradient,
)
from rl_ig.optim import KFAC

LR_ADAPT_FACTOR = 1.5
LR_SCALE_RANGE = (1e-3, 1e3)
KFAC_ERROR_CG_ITERS = 20
"""CG iterations of the exact damped natural gradient that K-FAC's direction is compared to."""


@dataclass(kw_only=True, frozen=True)
class ACKTRConfig:
    """ACKTR hyperparameters (the paper's names; the critic's carry a ``vf_`` prefix).

    Attributes:
        n_steps: environment steps per environment per update.
        gamma: discount.
        gae_lambda: GAE λ (1: n-step returns).
        learning_rate: the actor's K-FAC step size, a number or ``"lin_X"``.
        max_kl: the actor's trust region on the K-FAC predicted KL of a step.
        damping: λ of the actor's ``A ⊗ G + λI``.
        momentum: heavy-ball momentum of both K-FAC steps. The trust region bounds the clipped
            direction, so with momentum > 0 the applied step can exceed it; 0 keeps every
            applied step inside (with 0.9, as in the Atari ACKTR, the measured KL on
            HalfCheetah was 10-60 times ``max_kl``).
        factor_decay: running-average decay of the actor's factors.
        inverse_update_freq: updates between eigendecompositions of the factors.
        ent_coef: weight of the entropy bonus.
        normalize_advantage: standardise advantages over the batch.
        target_kl: adapt the actor's step size towards this measured KL (None: fixed).
        vf_learning_rate: the critic's K-FAC step size.
        vf_max_kl: the critic's trust region (the KL between ``N(V_old, 1)`` and ``N(V, 1)``).
        vf_damping: λ of the critic.
        vf_factor_decay: running-average decay of the critic's factors.
        vf_iters: critic K-FAC steps per update (the continuous-control ACKTR fitted its
            value function with several).
        policy: network shape [``policy_kwargs``].
    """

    n_steps: int = 20
    gamma: float = 0.99
    gae_lambda: float = 0.95
    learning_rate: float | str = 0.25
    max_kl: float = 0.003
    damping: float = 0.01
    momentum: float = 0.0
    factor_decay: float = 0.95
    inverse_update_freq: int = 10
    ent_coef: float = 0.0
    normalize_advantage: bool = True
    target_kl: float | None = None
    vf_learning_rate: float = 1.0
    vf_max_kl: float = 0.01
    vf_damping: float = 0.01
    vf_factor_decay: float = 0.95
    vf_iters: int = 1
    policy: PolicyConfig = field(default_factory=PolicyConfig)

    def __post_init__(self) -> None:
        check_positive_int("n_steps", self.n_steps)
        check_positive_int("inverse_update_freq", self.inverse_update_freq)
        check_positive_int("vf_iters", self.vf_iters)
        check_range("gamma", self.gamma, 0.0, 1.0, open_low=True)
        check_range("gae_lambda", self.gae_lambda, 0.0, 1.0)
        parse_schedule("learning_rate", self.learning_rate)
        positive = ("max_kl", "damping", "vf_learning_rate", "vf_max_kl", "vf_damping")
        for name in positive:
            check_range(name, getattr(self, name), 0.0, math.inf, open_low=True, open_high=True)
        for name in ("momentum", "factor_decay", "vf_factor_decay"):
            check_range(name, getattr(self, name), 0.0, 1.0, open_high=True)
        check_range("ent_coef", self.ent_coef, 0.0, math.inf, open_high=True)
        if self.target_kl is not None:
            check_range("target_kl", self.target_kl, 0.0, math.inf, open_low=True, open_high=True)


class ACKTR(OnPolicyAgent):
    """ACKTR: K-FAC natural-gradient actor and critic with KL-clipped steps.

    Example:
        >>> agent = ACKTR(envs.make_vec_env("CartPole", n_envs=8), seed=0)
        >>> agent.learn(100_000)
    """

    algo: ClassVar[str] = "acktr"
    config_class: ClassVar[type] = ACKTRConfig
    aliases: ClassVar[dict[str, str]] = {"policy_kwargs": "policy", "kl_clip": "max_kl"}
    config: ACKTRConfig

    def _setup(self) -> None:
        cfg = self.config
        self.fisher = PolicyFisher(self.actor)
        self.learning_rate = parse_schedule("learning_rate", cfg.learning_rate)
        self.lr_scale = 1.0  # the target_kl adaptation's factor on the schedule
        diag = {self.actor.log_std: 2.0} if isinstance(self.actor, GaussianActor) else None
        self.actor_optimizer = KFAC(
            self.actor,
            lr=self.learning_rate(1.0),
            damping=cfg.damping,
            momentum=cfg.momentum,
            factor_decay=cfg.factor_decay,
            inverse_update_freq=cfg.inverse_update_freq,
            kl_clip=cfg.max_kl,
            capture="explicit",
            diag_fisher=diag,
        )
        self.critic_optimizer = KFAC(
            self.critic,
            lr=cfg.vf_learning_rate,
            damping=cfg.vf_damping,
            momentum=cfg.momentum,
            factor_decay=cfg.vf_factor_decay,
            inverse_update_freq=cfg.inverse_update_freq,
            kl_clip=cfg.vf_max_kl,
            capture="explicit",
        )

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"actor": self.actor_optimizer, "critic": self.critic_optimizer}

    def kl_bound(self) -> float:
        return self.config.max_kl

    def measured_geometry(self, probe: StepProbe, grad: torch.Tensor) -> dict[str, float]:
        """How well K-FAC's Fisher stands in for the exact one on this batch.

        ``geometry/kfac_error``: ``‖F̂⁻¹g − (F + λI)⁻¹g‖ / ‖(F + λI)⁻¹g‖`` with ``F̂`` the
        actor's damped K-FAC Fisher as of this step, ``F`` the exact Fisher at ``θ_old`` and
        ``λ = damping``; ``geometry/cond_A_max`` and ``geometry/cond_G_max``: the largest
        condition numbers of the layers' running factors.
        """
        opt, params = self.actor_optimizer, self.fisher.params
        kfac = kfac_flat_direction(opt, params, grad)
        with at_parameters(params, probe.theta_old):
            exact = natural_gradient(
                self.fisher, probe.obs, grad, damping=self.config.damping, iters=KFAC_ERROR_CG_ITERS
            )
        conditions = factor_condition_numbers(opt).values()
        return {
            "geometry/kfac_error": kfac_relative_error(kfac, exact),
            "geometry/cond_A_max": max((a for a, _ in conditions), default=math.nan),
            "geometry/cond_G_max": max((g for _, g in conditions), default=math.nan),
        }

    def update(self, batch: Batch) -> dict[str, float]:
        cfg = self.config
        adv = normalize(batch.advantages) if cfg.normalize_advantage else batch.advantages
        theta_old = parameters_to_vector(self.fisher.params).detach().clone()
        info, old_dist = self.actor_step(batch.obs, batch.actions, adv)
        info.update(self.critic_step(batch.obs, batch.returns))
        info.update(step_geometry(self.fisher, batch.obs, old_dist, theta_old))
        if cfg.target_kl is not None:
            self.adapt_step_size(info["train/kl"])
        info["train/explained_variance"] = explained_variance(batch.values, batch.returns)
        info["train/std"] = policy_std(self.actor)
        info["geometry/kl_clip_scale"] = info["train/kl_clip_scale"]
        return info

    def actor_step(self, obs: torch.Tensor, actions: torch.Tensor, adv: torch.Tensor):
        """Step 1; returns the step's measurements and the policy before it."""
        opt, cfg = self.actor_optimizer, self.config
        lr = self.learning_rate(self.progress_remaining) * self.lr_scale
        for group in opt.param_groups:
            group["lr"] = lr
        with opt.capture_factors():
            dist = self.actor(obs)
            if opt.factors_due:
                loss = self.fisher.sampled_fisher_loss(dist, self.generator)
                loss.backward(retain_graph=True)
        opt.zero_grad(set_to_none=True)
        entropy = dist.entropy().mean()
        policy_loss = -(adv * dist.log_prob(actions)).mean()
        (policy_loss - cfg.ent_coef * entropy).backward()
        opt.step()
        step = opt.last_step_info
        info = {
            "train/policy_loss": policy_loss.item(),
            "train/entropy": entropy.item(),
            "train/learning_rate": lr,
            "train/kfac_predicted_kl": step["predicted_kl"],
            "train/kl_clip_scale": step["kl_clip_scale"],
            "train/kfac_skipped_layers": step["skipped_layers"],
        }
        return info, detach_distribution(dist)

    def critic_step(self, obs: torch.Tensor, returns: torch.Tensor) -> dict[str, float]:
        """Step 2: ``vf_iters`` K-FAC steps on ``½·mean[(R − V)²]``, the Gaussian NLL."""
        infos = [self._critic_iteration(obs, returns) for _ in range(self.config.vf_iters)]
        return {key: sum(i[key] for i in infos) / len(infos) for key in infos[0]}

    def _critic_iteration(self, obs: torch.Tensor, returns: torch.Tensor) -> dict[str, float]:
        opt = self.critic_optimizer
        with opt.capture_factors():
            values = self.critic(obs)
            if opt.factors_due:
                noise = torch.randn(values.shape, generator=self.generator)
                target = values.detach() + noise.to(values)
                (0.5 * (values - target).square().mean()).backward(retain_graph=True)
        opt.zero_grad(set_to_none=True)
        loss = 0.5 * (values - returns).square().mean()
        loss.backward()
        opt.step()
        return {
            "train/value_loss": 2.0 * loss.item(),
            "train/vf_predicted_kl": opt.last_step_info["predicted_kl"],
            "train/vf_kl_clip_scale": opt.last_step_info["kl_clip_scale"],
        }

    def adapt_step_size(self, kl: float) -> None:
        """Step 3: move the actor's step size towards ``target_kl`` by a factor of 1.5."""
        target = self.config.target_kl
        assert target is not None
        if kl > 2.0 * target:
            self.lr_scale /= LR_ADAPT_FACTOR
        elif kl < 0.5 * target:
            self.lr_scale *= LR_ADAPT_FACTOR
        self.lr_scale = min(max(self.lr_scale, LR_SCALE_RANGE[0]), LR_SCALE_RANGE[1])

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["lr_scale"] = torch.tensor(self.lr_scale, dtype=torch.float64)
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.lr_scale = float(state["lr_scale"])
