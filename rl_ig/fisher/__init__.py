"""The policy-Fisher module: KL, Fisher-vector products, conjugate gradient."""

from rl_ig.fisher.cg import conjugate_gradient
from rl_ig.fisher.distributions import (
    analytic_fisher,
    detach_distribution,
    per_state_kl,
    sample,
)
from rl_ig.fisher.policy_fisher import GaussNewtonOperator, KLHessianOperator, PolicyFisher

__all__ = [
    "GaussNewtonOperator",
    "KLHessianOperator",
    "PolicyFisher",
    "analytic_fisher",
    "conjugate_gradient",
    "detach_distribution",
    "per_state_kl",
    "sample",
]
