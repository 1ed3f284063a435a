"""Advantage actor-critic (Mnih et al. 2016, synchronous): the plain policy gradient.

Each update takes one step on the whole rollout of ``n_envs × n_steps`` transitions:

1. ``loss``: ``ℓ = −mean[Â · log π(a|s)] − ent_coef·mean H + vf_coef·mean[(R − V)²]``;
2. ``clip``: the gradient's global norm is clipped to ``max_grad_norm``;
3. ``step``: SGD (the Euclidean metric), RMSprop or Adam (a diagonal metric built from
   squared gradients), as ``optimizer`` selects.

With the same rollout, GAE, networks and KL code as the natural-gradient agents, A2C is the
Euclidean end of rl-ig's comparison of update geometries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import gymnasium as gym
import torch
from torch.nn.utils import parameters_to_vector

from agents.common.actor_critic import (
    ActorCriticGradient,
    LossAndGrad,
    parse_schedule,
    set_learning_rate,
)
from agents.common.agent import OnPolicyAgent
from agents.common.config import check_positive_int, check_range
from agents.common.networks import PolicyConfig, policy_std
from agents.common.rollout import Batch
from agents.common.updates import explained_variance, normalize, step_geometry
from rl_ig.fisher import PolicyFisher, detach_distribution
from rl_ig.optim.adam import Adam

OPTIMIZERS = ("rmsprop", "adam", "sgd")


@dataclass(kw_only=True, frozen=True)
class A2CConfig:
    """A2C hyperparameters, under Stable-Baselines3's names and defaults.

    Attributes:
        n_steps: environment steps per environment per update.
        gamma: discount.
        gae_lambda: GAE λ (1: n-step returns).
        learning_rate: a number or ``"lin_X"`` (linear decay from X to 0).
        optimizer: ``rmsprop`` (SB3's default, α = 0.99), ``adam`` or ``sgd``
            [``use_rms_prop``: true is rmsprop, false adam].
        eps: ε of RMSprop or Adam [``rms_prop_eps``].
        ent_coef: weight of the entropy bonus.
        vf_coef: weight of the value loss.
        max_grad_norm: clip of the gradient's global norm (None: no clip).
        normalize_advantage: standardise advantages over the batch.
        policy: network shape [``policy_kwargs``].
    """

    n_steps: int = 5
    gamma: float = 0.99
    gae_lambda: float = 1.0
    learning_rate: float | str = 7e-4
    optimizer: str = "rmsprop"
    eps: float = 1e-5
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float | None = 0.5
    normalize_advantage: bool = False
    policy: PolicyConfig = field(default_factory=PolicyConfig)

    def __post_init__(self) -> None:
        check_positive_int("n_steps", self.n_steps)
        check_range("gamma", self.gamma, 0.0, 1.0, open_low=True)
        check_range("gae_lambda", self.gae_lambda, 0.0, 1.0)
        parse_schedule("learning_rate", self.learning_rate)
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}"
            )
        check_range("eps", self.eps, 0.0, math.inf, open_low=True, open_high=True)
        check_range("ent_coef", self.ent_coef, 0.0, math.inf, open_high=True)
        check_range("vf_coef", self.vf_coef, 0.0, math.inf, open_high=True)
        if self.max_grad_norm is not None:
            check_range("max_grad_norm", self.max_grad_norm, 0.0, math.inf, open_low=True)


def policy_gradient_loss(log_prob: torch.Tensor, adv: torch.Tensor) -> LossAndGrad:
    """``−mean[Â · log π]`` and its derivative ``−Â/B`` with respect to ``log π``."""
    return -(adv * log_prob).mean(), adv.mul(-1.0 / adv.shape[0])


def mse(values: torch.Tensor, returns: torch.Tensor) -> LossAndGrad:
    """``mean[(R − V)²]`` and its derivative ``2(V − R)/B``."""
    err = values - returns
    return err.square().mean(), err.mul(2.0 / values.shape[0])


class A2C(OnPolicyAgent):
    """A2C on the shared rollout/GAE/policy stack.

    Example:
        >>> agent = A2C(envs.make_vec_env("CartPole", n_envs=8), optimizer="adam", seed=0)
        >>> agent.learn(100_000)
    """

    algo: ClassVar[str] = "a2c"
    config_class: ClassVar[type] = A2CConfig
    aliases: ClassVar[dict[str, str]] = {"policy_kwargs": "policy", "rms_prop_eps": "eps"}
    conventions: ClassVar[dict[str, str]] = {"use_rms_prop": "optimizer"}
    config: A2CConfig

    @classmethod
    def resolve_hyperparameters(cls, hp: dict[str, Any], action_space: gym.Space) -> dict[str, Any]:
        """Read SB3's ``use_rms_prop`` (true: rmsprop, false: adam) as ``optimizer``.

        Raises:
            ValueError: if both are given, or ``use_rms_prop`` is not a bool.
        """
        hp = dict(hp)
        if "use_rms_prop" not in hp:
            return hp
        if "optimizer" in hp:
            raise ValueError("give optimizer or use_rms_prop (SB3's name), not both")
        flag = hp.pop("use_rms_prop")
        if not isinstance(flag, bool):
            raise TypeError(f"use_rms_prop must be true or false, got {flag!r}")
        hp["optimizer"] = "rmsprop" if flag else "adam"
        return hp

    def _setup(self) -> None:
        cfg = self.config
        self.fisher = PolicyFisher(self.actor)
        self.gradient = ActorCriticGradient(self.actor, self.critic)
        self.learning_rate = parse_schedule("learning_rate", cfg.learning_rate)
        self.optimizer = self._make_optimizer(self.learning_rate(1.0))

    def _make_optimizer(self, lr: float) -> torch.optim.Optimizer:
        params, cfg = self.gradient.parameters, self.config
        if cfg.optimizer == "rmsprop":
            return torch.optim.RMSprop(params, lr=lr, alpha=0.99, eps=cfg.eps)
        if cfg.optimizer == "adam":
            return Adam(params, lr=lr, eps=cfg.eps)
        return torch.optim.SGD(params, lr=lr)

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"policy": self.optimizer}

    def update(self, batch: Batch) -> dict[str, float]:
        cfg = self.config
        lr = self.learning_rate(self.progress_remaining)
        set_learning_rate(self.optimizer, lr)
        adv = normalize(batch.advantages) if cfg.normalize_advantage else batch.advantages
        with torch.no_grad():
            old_dist = detach_distribution(self.actor(batch.obs))
        theta_old = parameters_to_vector(self.fisher.params).detach().clone()
        losses = self.gradient(
            batch.obs,
            batch.actions,
            lambda log_prob: policy_gradient_loss(log_prob, adv),
            lambda values: mse(values, batch.returns),
            cfg.ent_coef,
            cfg.vf_coef,
            cfg.max_grad_norm,
        )
        grad_norm = losses.grad_norm
        self.optimizer.step()
        info = step_geometry(self.fisher, batch.obs, old_dist, theta_old)
        info.update(
            {
                "train/policy_loss": losses.policy.item(),
                "train/value_loss": losses.value.item(),
                "train/entropy_loss": -losses.entropy.item(),
                "train/grad_norm": grad_norm.item(),
                "train/learning_rate": lr,
                "train/explained_variance": explained_variance(batch.values, batch.returns),
                "train/std": policy_std(self.actor),
            }
        )
        return info
