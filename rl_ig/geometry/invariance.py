"""The natural gradient does not depend on how the policy is parameterised; the plain one does.

One Gaussian policy ``π(a|s) = N(W₂ tanh(W₁ s + b₁) + b₂, diag(exp(log σ))²)`` is written in
two coordinate systems:

- **A** (canonical): ``θ_A = (W₁, b₁, W₂, b₂, log σ)``;
- **B** (mixed): ``θ_B = (U₁, c₁, U₂, c₂, ρ)`` with ``W₁ = D U₁``, ``b₁ = D c₁``, ``W₂ = U₂ M``,
  ``b₂ = c₂``, ``log σ = s·ρ``: B's network scales its hidden pre-activations by a fixed
  diagonal ``D``, mixes its hidden activations by a fixed invertible ``M`` before its output
  layer and scales its log-std by ``s``. Started at ``θ_B = φ⁻¹(θ_A)``, B computes the same
  policy as A.

The map ``θ_A = φ(θ_B) = L θ_B`` is linear, so ``g_B = Lᵀ g_A`` and ``F_B = Lᵀ F_A L``. The
natural step ``F_B⁻¹ g_B = L⁻¹ F_A⁻¹ g_A`` moves the policy exactly as A's natural step does
(Amari 1998, §3; Kakade 2001, §3), while the plain step ``η g_B`` moves A's coordinates by
``η L Lᵀ g_A``, another policy. :func:`invariance_experiment` measures both on one batch:
``KL(π_A' || π_B')`` after a natural step in each coordinate system is zero up to the conjugate
gradient's tolerance; after a plain step of the same size it is not.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch.distributions import Distribution, Independent, Normal, kl_divergence

from rl_ig.fisher import PolicyFisher

Params = list[torch.Tensor]
Policy = Callable[[torch.Tensor], Distribution]


@dataclass(kw_only=True, frozen=True)
class InvarianceConfig:
    """The policy, batch and step of the experiment.

    Attributes:
        obs_dim: observation size.
        hidden: hidden units of the one tanh layer.
        act_dim: action size.
        n_states: states in the batch.
        target_kl: each step size is set so that the step in A's coordinates moves the policy
            by this mean KL.
        scale_range: ``D``'s diagonal spans ``[1/scale_range, scale_range]`` log-uniformly.
        mixing: the strength of ``M = I + mixing·R/√hidden`` (``R`` standard normal).
        log_std_scale: ``s`` in ``log σ = s·ρ``.
        cg_iters: conjugate-gradient iterations at most.
        cg_tol: conjugate-gradient tolerance on the squared residual.
        seed: the seed of the weights, the batch, ``D`` and ``M``.
    """

    obs_dim: int = 4
    hidden: int = 16
    act_dim: int = 2
    n_states: int = 512
    target_kl: float = 0.01
    scale_range: float = 5.0
    mixing: float = 0.5
    log_std_scale: float = 1.5
    cg_iters: int = 2000
    cg_tol: float = 1e-30
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("obs_dim", "hidden", "act_dim", "n_states", "cg_iters"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("target_kl", "log_std_scale"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if not self.scale_range >= 1:
            raise ValueError(f"scale_range must be >= 1, got {self.scale_range!r}")
        if not (self.mixing >= 0 and self.cg_tol >= 0):
            raise ValueError(f"mixing and cg_tol must be >= 0, got {self.mixing}, {self.cg_tol}")


@dataclass(frozen=True)
class Batch:
    """States ``obs: (B, obs_dim)``, actions ``(B, act_dim)`` drawn from the policy, and
    advantages ``(B,)``."""

    obs: torch.Tensor
    actions: torch.Tensor
    advantages: torch.Tensor


@dataclass(frozen=True)
class Reparameterisation:
    """B's fixed matrices: ``D = diag(d)`` on the pre-activations, ``M`` on the activations,
    ``s`` on the log-std; see the module docstring."""

    d: torch.Tensor
    M: torch.Tensor
    s: float

    def to_canonical(self, theta_b: Sequence[torch.Tensor]) -> Params:
        """``θ_A = φ(θ_B)``, differentiable in ``θ_B``."""
        u1, c1, u2, c2, rho = theta_b
        return [self.d[:, None] * u1, self.d * c1, u2 @ self.M, c2, self.s * rho]

    def from_canonical(self, theta_a: Sequence[torch.Tensor]) -> Params:
        """``θ_B = φ⁻¹(θ_A)``."""
        w1, b1, w2, b2, log_std = theta_a
        m_inv = torch.linalg.inv(self.M)
        return [w1 / self.d[:, None], b1 / self.d, w2 @ m_inv, b2.clone(), log_std / self.s]


@dataclass(frozen=True)
class StepResult:
    """What one kind of step did in both coordinate systems.

    Attributes:
        kl_between: mean over the batch of ``KL(π_A' || π_B')``, the two stepped policies.
        kl_a: mean ``KL(π || π_A')``, how far A's step moved the policy.
        kl_b: mean ``KL(π || π_B')``, how far B's step moved it.
        mismatch: ``‖φ(θ_B + Δ_B) − (θ_A + Δ_A)‖ / ‖Δ_A‖``, how far apart the two steps land
            in A's coordinates, relative to A's step.
        step_size: the scalar the direction was multiplied by (the same in A and B).
    """

    kl_between: float
    kl_a: float
    kl_b: float
    mismatch: float
    step_size: float


@dataclass(frozen=True)
class InvarianceResult:
    """The experiment's measurements.

    Attributes:
        initial_kl: ``KL(π_A || π_B)`` before any step (the two define one policy: ~0).
        natural: the natural-gradient step.
        plain: the plain-gradient step.
        cg_residual: the largest relative residual ``‖F x − g‖ / ‖g‖`` of the two CG solves.
        n_params: parameters of each coordinate system.
    """

    initial_kl: float
    natural: StepResult
    plain: StepResult
    cg_residual: float
    n_params: int


def gaussian_policy(theta_a: Sequence[torch.Tensor], obs: torch.Tensor) -> Distribution:
    """``N(W₂ tanh(W₁ s + b₁) + b₂, exp(log σ)²)`` per state, for ``obs: (B, obs_dim)``."""
    w1, b1, w2, b2, log_std = theta_a
    mean = torch.tanh(obs @ w1.T + b1) @ w2.T + b2
    return Independent(Normal(mean, log_std.exp().expand_as(mean)), 1)


def canonical_parameters(config: InvarianceConfig, generator: torch.Generator) -> Params:
    """``θ_A`` drawn with ``1/√fan_in`` weights, small biases and ``log σ = −0.5``."""
    o, h, a = config.obs_dim, config.hidden, config.act_dim

    def draw(*shape: int, scale: float) -> torch.Tensor:
        return scale * torch.randn(*shape, generator=generator, dtype=torch.float64)

    log_std = torch.full((a,), -0.5, dtype=torch.float64)
    w1, b1 = draw(h, o, scale=o**-0.5), draw(h, scale=0.1)
    w2, b2 = draw(a, h, scale=h**-0.5), draw(a, scale=0.1)
    return [w1, b1, w2, b2, log_std]


def reparameterisation(config: InvarianceConfig, generator: torch.Generator) -> Reparameterisation:
    """``D`` log-uniform in ``[1/scale_range, scale_range]`` (shuffled), ``M = I + mixing·R/√h``."""
    h = config.hidden
    exponents = torch.linspace(-1.0, 1.0, h, dtype=torch.float64)
    d = config.scale_range ** exponents[torch.randperm(h, generator=generator)]
    noise = torch.randn(h, h, generator=generator, dtype=torch.float64)
    mixing = torch.eye(h, dtype=torch.float64) + config.mixing * noise / math.sqrt(h)
    return Reparameterisation(d=d, M=mixing, s=config.log_std_scale)


def make_batch(
    config: InvarianceConfig, theta_a: Sequence[torch.Tensor], generator: torch.Generator
) -> Batch:
    """Standard-normal states, actions drawn from the policy, advantages linear in the action
    plus noise (so the gradient has a clear direction)."""
    shape = (config.n_states, config.obs_dim)
    obs = torch.randn(*shape, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        dist = gaussian_policy(theta_a, obs)
        noise = torch.randn(dist.mean.shape, generator=generator, dtype=torch.float64)
        actions = dist.mean + dist.stddev * noise
    weights = torch.randn(config.act_dim, generator=generator, dtype=torch.float64)
    jitter = torch.randn(config.n_states, generator=generator, dtype=torch.float64)
    advantages = noise @ weights + 0.1 * jitter
    return Batch(obs=obs, actions=actions, advantages=advantages - advantages.mean())


def surrogate_gradient(policy: Policy, params: Params, batch: Batch) -> torch.Tensor:
    """``g = ∇ mean[ π(a|s)/π_old(a|s) · A ]`` at ``π = π_old``: ``mean[∇ log π(a|s) · A]``,
    flat ``(n,)``."""
    logp = policy(batch.obs).log_prob(batch.actions)
    grads = torch.autograd.grad((logp * batch.advantages).mean(), params)
    return torch.cat([g.reshape(-1) for g in grads])


def shifted(params: Params, step: torch.Tensor) -> Params:
    """``params + step`` as new leaf tensors (``step`` flat in the same layout)."""
    chunks = step.split([p.numel() for p in params])
    return [(p + c.view_as(p)).detach().requires_grad_() for p, c in zip(params, chunks)]


def mean_kl(p: Distribution, q: Distribution) -> float:
    """Mean over the batch of ``KL(p || q)``."""
    return float(kl_divergence(p, q).mean())


class _Coordinates:
    """One coordinate system: its parameters, the policy they define and its Fisher."""

    def __init__(self, params: Params, to_canonical: Callable[[Params], Params], batch: Batch):
        self.params = [p.detach().requires_grad_() for p in params]
        self.to_canonical = to_canonical
        self.batch = batch
        self.fisher = PolicyFisher(self.policy, params=self.params)
        self.grad = surrogate_gradient(self.policy, self.params, batch)

    def policy(self, obs: torch.Tensor, params: Params | None = None) -> Distribution:
        """The policy at ``params`` (default: the current ones)."""
        return gaussian_policy(self.to_canonical(self.params if params is None else params), obs)

    def natural_direction(self, iters: int, tol: float) -> tuple[torch.Tensor, float]:
        """``x = F⁻¹ g`` by undamped CG and its relative residual ``‖F x − g‖ / ‖g‖``."""
        x = self.fisher.solve(self.batch.obs, self.grad, damping=0.0, iters=iters, tol=tol)
        residual = self.fisher.fvp(self.batch.obs, x) - self.grad
        return x.detach(), float(residual.norm() / self.grad.norm())

    def stepped(self, step: torch.Tensor) -> Distribution:
        """The policy after ``params + step``, on the batch's states, without a graph."""
        with torch.no_grad():
            return self.policy(self.batch.obs, shifted(self.params, step))

    def quadratic_kl(self, direction: torch.Tensor) -> float:
        """``½ xᵀ F x``: the second-order KL of a unit multiple of ``direction``."""
        return 0.5 * float(direction @ self.fisher.fvp(self.batch.obs, direction))


def _step_size(coords: _Coordinates, direction: torch.Tensor, target_kl: float) -> float:
    """``β > 0`` with ``KL(π || π(θ + β·direction)) = target_kl`` (to 1e-12 relative), by
    bisection on ``β``; the quadratic model ``½ β² xᵀ F x`` gives the first bracket."""
    old = coords.stepped(torch.zeros_like(direction))

    def kl(beta: float) -> float:
        return mean_kl(old, coords.stepped(beta * direction))

    high = math.sqrt(target_kl / coords.quadratic_kl(direction))
    while kl(high) < target_kl:
        high *= 2.0
    low = 0.0
    while high - low > 1e-12 * high:
        middle = 0.5 * (low + high)
        low, high = (middle, high) if kl(middle) < target_kl else (low, middle)
    return 0.5 * (low + high)


def _compare(
    a: _Coordinates, b: _Coordinates, step_a: torch.Tensor, step_b: torch.Tensor, size: float
) -> StepResult:
    """The KLs between the old policy and each stepped one, and between the stepped two."""
    old = a.stepped(torch.zeros_like(step_a))
    new_a, new_b = a.stepped(step_a), b.stepped(step_b)
    with torch.no_grad():
        landed_a = torch.cat([p.reshape(-1) for p in shifted(a.params, step_a)])
        landed_b = torch.cat([p.reshape(-1) for p in b.to_canonical(shifted(b.params, step_b))])
    return StepResult(
        kl_between=mean_kl(new_a, new_b),
        kl_a=mean_kl(old, new_a),
        kl_b=mean_kl(old, new_b),
        mismatch=float((landed_b - landed_a).norm() / step_a.norm()),
        step_size=size,
    )


def invariance_experiment(config: InvarianceConfig | None = None) -> InvarianceResult:
    """One natural and one plain gradient step in coordinates A and B; see the module.

    Each step type uses one fixed step size in both systems, set in A so that A's step moves
    the policy by a mean KL of ``target_kl``: ``β`` for the natural direction ``F⁻¹g``, ``η``
    for the plain direction ``g``. Everything runs in float64.

    Args:
        config: the experiment's settings; the defaults when ``None``.

    Returns:
        The KL between the policies the two systems' steps reach, per step type.
    """
    config = config or InvarianceConfig()
    generator = torch.Generator().manual_seed(config.seed)
    theta_a = canonical_parameters(config, generator)
    reparam = reparameterisation(config, generator)
    batch = make_batch(config, theta_a, generator)
    a = _Coordinates(theta_a, list, batch)
    b = _Coordinates(reparam.from_canonical(theta_a), reparam.to_canonical, batch)
    x_a, res_a = a.natural_direction(config.cg_iters, config.cg_tol)
    x_b, res_b = b.natural_direction(config.cg_iters, config.cg_tol)
    beta = _step_size(a, x_a, config.target_kl)
    eta = _step_size(a, a.grad, config.target_kl)
    with torch.no_grad():
        initial = mean_kl(a.policy(batch.obs), b.policy(batch.obs))
    return InvarianceResult(
        initial_kl=initial,
        natural=_compare(a, b, beta * x_a, beta * x_b, beta),
        plain=_compare(a, b, eta * a.grad, eta * b.grad, eta),
        cg_residual=max(res_a, res_b),
        n_params=a.fisher.dim,
    )
