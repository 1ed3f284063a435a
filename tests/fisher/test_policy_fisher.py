"""PolicyFisher against dense float64 references built from Jacobians and KL Hessians."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.distributions import Categorical, Distribution, Independent, Laplace, Normal
from torch.func import functional_call, jacrev

from rl_ig.fisher import PolicyFisher, detach_distribution


@pytest.fixture(autouse=True)
def _float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


OBS_DIM, ACT_DIM, N_STATES = 3, 2, 7


class GaussianPolicy(nn.Module):
    """Tanh MLP mean with a state-independent log-std, as in the agents."""

    def __init__(self, independent: bool = True):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(OBS_DIM, 5), nn.Tanh(), nn.Linear(5, ACT_DIM))
        self.log_std = nn.Parameter(torch.randn(ACT_DIM) * 0.3)
        self.independent = independent

    def forward(self, obs: torch.Tensor) -> Distribution:
        normal = Normal(self.net(obs), self.log_std.exp().expand(obs.shape[0], ACT_DIM))
        return Independent(normal, 1) if self.independent else normal


class StateScalePolicy(nn.Module):
    """Mean and scale both depend on the state."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(OBS_DIM, 5), nn.Tanh(), nn.Linear(5, 2 * ACT_DIM))

    def forward(self, obs: torch.Tensor) -> Distribution:
        loc, pre = self.net(obs).chunk(2, dim=-1)
        return Independent(Normal(loc, nn.functional.softplus(pre) + 0.1), 1)


class CategoricalPolicy(nn.Module):
    def __init__(self, n_actions: int = 4):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(OBS_DIM, 5), nn.Tanh(), nn.Linear(5, n_actions))

    def forward(self, obs: torch.Tensor) -> Distribution:
        return Categorical(logits=self.net(obs))


class LaplacePolicy(nn.Module):
    """A family with no analytic Fisher here: exercises the double-backprop fallback."""

    def __init__(self):
        super().__init__()
        self.net = nn.Linear(OBS_DIM, ACT_DIM)
        self.log_scale = nn.Parameter(torch.zeros(ACT_DIM))

    def forward(self, obs: torch.Tensor) -> Distribution:
        return Independent(Laplace(self.net(obs), self.log_scale.exp().expand(len(obs), -1)), 1)


def _flat_params(policy: nn.Module) -> tuple[list[str], list[torch.Tensor]]:
    names, params = zip(*policy.named_parameters())
    return list(names), list(params)


def _unflatten(theta: torch.Tensor, names: list[str], like: list[torch.Tensor]) -> dict:
    out, i = {}, 0
    for name, p in zip(names, like):
        out[name] = theta[i : i + p.numel()].view_as(p)
        i += p.numel()
    return out


def dense_fisher_from_jacobian(policy: nn.Module, obs: torch.Tensor) -> torch.Tensor:
    """F = mean_s J(s)ᵀ F_π(s) J(s), J the Jacobian of the distribution's coordinates."""
    names, params = _flat_params(policy)
    theta = torch.cat([p.detach().reshape(-1) for p in params])

    def coords(t: torch.Tensor) -> torch.Tensor:
        dist = functional_call(policy, _unflatten(t, names, params), (obs,))
        base = dist.base_dist if isinstance(dist, Independent) else dist
        if isinstance(base, Normal):
            return torch.cat([base.loc, base.scale], dim=-1)
        return base.logits

    jac = jacrev(coords)(theta)  # (B, k, n)
    with torch.no_grad():
        dist = policy(obs)
        base = dist.base_dist if isinstance(dist, Independent) else dist
        if isinstance(base, Normal):
            inv_var = base.scale.pow(-2)
            metric = torch.diag_embed(torch.cat([inv_var, 2.0 * inv_var], dim=-1))
        else:
            p = base.probs
            metric = torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-2)
    return torch.einsum("bkn,bkl,blm->nm", jac, metric, jac) / obs.shape[0]


def dense_kl_hessian(policy: nn.Module, obs: torch.Tensor) -> torch.Tensor:
    """The Hessian of mean KL(π_old || π_θ) at θ_old, by dense second differentiation."""
    names, params = _flat_params(policy)
    theta = torch.cat([p.detach().reshape(-1) for p in params])
    with torch.no_grad():
        old = policy(obs)

    def mean_kl(t: torch.Tensor) -> torch.Tensor:
        new = functional_call(policy, _unflatten(t, names, params), (obs,))
        kl = torch.distributions.kl_divergence(old, new)
        return kl.reshape(obs.shape[0], -1).sum(1).mean()

    return torch.autograd.functional.hessian(mean_kl, theta)


POLICIES = {
    "independent-normal": lambda: GaussianPolicy(independent=True),
    "normal": lambda: GaussianPolicy(independent=False),
    "state-scale": StateScalePolicy,
    "categorical": CategoricalPolicy,
}


@pytest.mark.parametrize("kind", list(POLICIES))
@pytest.mark.parametrize("method", ["auto", "gauss-newton", "double-backprop"])
def test_fvp_equals_dense_fisher(kind: str, method: str) -> None:
    torch.manual_seed(0)
    policy = POLICIES[kind]()
    obs = torch.randn(N_STATES, OBS_DIM)
    fisher = PolicyFisher(policy)
    dense = dense_fisher_from_jacobian(policy, obs)
    op = fisher.operator(obs, method=method)
    for _ in range(3):
        v = torch.randn(fisher.dim)
        torch.testing.assert_close(op(v), dense @ v, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("kind", list(POLICIES))
def test_jacobian_fisher_is_the_kl_hessian(kind: str) -> None:
    # The two dense references agree: F_π in closed form is the right metric.
    torch.manual_seed(1)
    policy = POLICIES[kind]()
    obs = torch.randn(N_STATES, OBS_DIM)
    torch.testing.assert_close(
        dense_fisher_from_jacobian(policy, obs),
        dense_kl_hessian(policy, obs),
        rtol=1e-8,
        atol=1e-12,
    )


def test_fallback_family_uses_kl_hessian() -> None:
    torch.manual_seed(2)
    policy = LaplacePolicy()
    obs = torch.randn(N_STATES, OBS_DIM)
    fisher = PolicyFisher(policy)
    dense = dense_kl_hessian(policy, obs)
    v = torch.randn(fisher.dim)
    torch.testing.assert_close(fisher.fvp(obs, v), dense @ v, rtol=1e-8, atol=1e-12)
    with pytest.raises(TypeError, match="no analytic Fisher"):
        fisher.operator(obs, method="gauss-newton")


def test_damping_solve_and_fisher_norm() -> None:
    torch.manual_seed(3)
    policy = GaussianPolicy()
    obs = torch.randn(N_STATES, OBS_DIM)
    fisher = PolicyFisher(policy)
    dense = dense_fisher_from_jacobian(policy, obs)
    eye = torch.eye(fisher.dim)
    v = torch.randn(fisher.dim)
    torch.testing.assert_close(fisher.fvp(obs, v, damping=0.3), (dense + 0.3 * eye) @ v)
    expected = torch.linalg.solve(dense + 0.3 * eye, v)
    solved = fisher.solve(obs, v, damping=0.3, iters=fisher.dim * 3, tol=1e-28)
    torch.testing.assert_close(solved, expected, rtol=1e-7, atol=1e-10)
    torch.testing.assert_close(fisher.fisher_norm(obs, v), (v @ dense @ v).sqrt())


def test_cached_operator_follows_parameter_updates() -> None:
    torch.manual_seed(4)
    policy = GaussianPolicy()
    obs = torch.randn(N_STATES, OBS_DIM)
    fisher = PolicyFisher(policy)
    v = torch.randn(fisher.dim)
    fisher.fvp(obs, v)
    with torch.no_grad():
        policy.log_std.add_(0.5)
        policy.net[0].weight.mul_(2.0)
    dense = dense_fisher_from_jacobian(policy, obs)
    torch.testing.assert_close(fisher.fvp(obs, v), dense @ v, rtol=1e-8, atol=1e-12)


def test_kl_is_mean_kl_old_to_new_and_differentiable() -> None:
    torch.manual_seed(5)
    policy = GaussianPolicy()
    obs = torch.randn(N_STATES, OBS_DIM)
    fisher = PolicyFisher(policy)
    old = detach_distribution(policy(obs))
    with torch.no_grad():
        policy.log_std.add_(0.2)
    kl = fisher.kl(obs, old)
    # KL(N(μ,σ₀)||N(μ,σ₀e^{0.2})) per dimension = 0.2 + e^{-0.4}/2 - 1/2.
    per_dim = 0.2 + torch.exp(torch.tensor(-0.4)) / 2 - 0.5
    torch.testing.assert_close(kl, ACT_DIM * per_dim)
    kl.backward()
    assert policy.log_std.grad is not None and policy.log_std.grad.abs().min() > 0


def test_bad_inputs_have_one_line_messages() -> None:
    policy = GaussianPolicy()
    fisher = PolicyFisher(policy)
    obs = torch.randn(N_STATES, OBS_DIM)
    with pytest.raises(ValueError, match=r"v must be a flat vector of \d+ entries"):
        fisher.fvp(obs, torch.zeros(3, 2))
    with pytest.raises(ValueError, match="damping must be >= 0"):
        fisher.fvp(obs, torch.zeros(fisher.dim), damping=-1.0)
    with pytest.raises(ValueError, match="method must be"):
        fisher.operator(obs, method="newton")
    with pytest.raises(TypeError, match="must return a torch.distributions.Distribution"):
        PolicyFisher(nn.Linear(3, 2)).kl(obs, policy(obs))
    with pytest.raises(ValueError, match="at least one parameter"):
        PolicyFisher(policy, params=[])
