"""K-FAC diagnostics on tiny float64 models with factors built by hand."""

from __future__ import annotations

import math

import pytest
import torch
from geometry_reference import OBS_DIM, dense_fisher, randn
from torch import nn
from torch.distributions import Distribution, Independent, Normal

from rl_ig.fisher import PolicyFisher
from rl_ig.geometry import (
    condition_number,
    factor_condition_numbers,
    flatten_directions,
    kfac_flat_direction,
    kfac_relative_error,
    natural_gradient,
)
from rl_ig.optim import KFAC

TOL = {"rtol": 1e-10, "atol": 0.0}
EPS = torch.finfo(torch.float64).eps


def _outer_mean(rows: torch.Tensor) -> torch.Tensor:
    return sum(torch.outer(r, r) for r in rows) / rows.shape[0]


def _hand_condition(matrix: torch.Tensor) -> float:
    values = torch.linalg.eigvalsh(matrix)
    return float(values[-1] / values[0])


def _regression_step(layer: nn.Linear, x: torch.Tensor, seed: int) -> tuple[KFAC, torch.Tensor]:
    """One lr = 0 K-FAC step on ``½‖y − t‖²``; returns the optimizer and ``g_i = y_i − t_i``."""
    opt = KFAC(layer, lr=0.0, damping=0.05)
    y = layer(x)
    residual = y - randn(*y.shape, seed=seed)
    (0.5 * residual.pow(2).sum(1).mean()).backward()
    opt.step()
    return opt, residual.detach()


def test_condition_numbers_are_those_of_the_hand_built_factors() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(3, 2)
    x = randn(6, 3, seed=1)
    opt, residual = _regression_step(layer, x, seed=2)
    a_hand = _outer_mean(torch.cat([x, torch.ones(6, 1)], dim=1))
    g_hand = _outer_mean(residual)
    cond_a, cond_g = factor_condition_numbers(opt)["model"]
    assert math.isclose(cond_a, _hand_condition(a_hand), rel_tol=1e-10)
    assert math.isclose(cond_g, _hand_condition(g_hand), rel_tol=1e-10)
    assert cond_a != cond_g


def test_condition_numbers_of_every_layer() -> None:
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    opt = KFAC(model, lr=0.0)
    assert factor_condition_numbers(opt) == {}  # no factors before the first step
    model(randn(8, 3, seed=4)).pow(2).mean().backward()
    opt.step()
    found = factor_condition_numbers(opt)
    assert set(found) == {"0", "2"}
    for name, (a, g) in opt.factors().items():
        assert found[name] == (condition_number(a), condition_number(g))


def test_singular_factors_are_clamped_at_the_rank_tolerance() -> None:
    # One example: A = ā āᵀ (4×4) and G = g gᵀ (2×2) have rank 1.
    torch.manual_seed(5)
    opt, _ = _regression_step(nn.Linear(3, 2), randn(1, 3, seed=6), seed=7)
    cond_a, cond_g = factor_condition_numbers(opt)["model"]
    assert math.isclose(cond_a, 1.0 / (4 * EPS), rel_tol=1e-12)
    assert math.isclose(cond_g, 1.0 / (2 * EPS), rel_tol=1e-12)


def test_condition_number_by_hand_and_of_a_zero_matrix() -> None:
    q, _ = torch.linalg.qr(randn(3, 3, seed=8))
    assert math.isclose(condition_number(q @ torch.diag(torch.tensor([4.0, 1.0, 0.5])) @ q.T), 8.0)
    assert math.isnan(condition_number(torch.zeros(3, 3)))
    # A float32 matrix is resolved to float32 precision only.
    singular = torch.diag(torch.tensor([1.0, 0.0])).float()
    assert condition_number(singular) == pytest.approx(1.0 / (2 * torch.finfo(torch.float32).eps))


def test_relative_error_is_zero_for_equal_inputs_and_a_hand_value_otherwise() -> None:
    cg = torch.tensor([3.0, 0.0, 4.0])
    assert kfac_relative_error(cg.clone(), cg) == 0.0
    assert kfac_relative_error(torch.tensor([3.0, 1.0, 4.0]), cg) == pytest.approx(0.2, rel=1e-15)
    assert kfac_relative_error(torch.tensor([0.0, 0.0, 8.0]), cg) == pytest.approx(
        math.sqrt(9.0 + 16.0) / 5.0, rel=1e-15
    )
    assert math.isnan(kfac_relative_error(cg, torch.zeros(3)))


def test_flat_direction_follows_the_given_parameter_order() -> None:
    torch.manual_seed(9)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    opt = KFAC(model, lr=0.0, damping=0.02)
    model(randn(8, 3, seed=10)).pow(2).mean().backward()
    opt.step()
    params = [p for group in opt.param_groups for p in group["params"]]
    grads = [randn(*p.shape, seed=11 + i) for i, p in enumerate(params)]
    reference = opt.precondition(grads)
    flat = kfac_flat_direction(opt, params, grads)
    torch.testing.assert_close(flat, torch.cat([d.reshape(-1) for d in reference]), **TOL)
    # Reversed order, the last bias's gradient missing: its entries are zeros, the others are
    # the optimizer's own directions for that set of gradients, reordered.
    missing = [*grads[:-1], None]
    reference = opt.precondition(missing)
    assert reference[-1] is None
    got = kfac_flat_direction(opt, params[::-1], missing[::-1])
    expected = [torch.zeros_like(params[-1]), *reference[::-1][1:]]
    torch.testing.assert_close(got, torch.cat([d.reshape(-1) for d in expected]), **TOL)
    # A flat gradient vector is split in the same layout.
    torch.testing.assert_close(
        kfac_flat_direction(opt, params, torch.cat([g.reshape(-1) for g in grads])), flat, **TOL
    )


def test_flatten_directions_reads_none_as_zeros() -> None:
    params = [torch.zeros(2, 2), torch.zeros(3)]
    got = flatten_directions([None, torch.tensor([1.0, 2.0, 3.0])], params)
    assert got.tolist() == [0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 3.0]


class LinearGaussian(nn.Module):
    """``N(wᵀs + b, σ²)``: one action dimension, a state-independent ``σ = exp(log_std)``."""

    def __init__(self, sigma: float) -> None:
        super().__init__()
        self.mean = nn.Linear(OBS_DIM, 1)
        self.log_std = nn.Parameter(torch.tensor([math.log(sigma)]))

    def forward(self, obs: torch.Tensor) -> Distribution:
        return Independent(Normal(self.mean(obs), self.log_std.exp().expand(obs.shape[0], 1)), 1)


def test_kfac_is_exact_for_a_linear_gaussian_with_one_action() -> None:
    # The mean layer's Fisher block is mean_s ā āᵀ · 1/σ² = A ⊗ G exactly when G is the
    # expected output-gradient covariance 1/σ² (here from a loss whose per-state output
    # gradient is 1/σ), so the damped K-FAC direction is the damped natural gradient.
    torch.manual_seed(12)
    policy = LinearGaussian(sigma=0.7)
    obs = randn(5, OBS_DIM, seed=13)
    opt = KFAC(policy, lr=0.0, damping=0.03)
    dist = policy(obs)
    (dist.mean.squeeze(-1) / dist.base_dist.scale.detach().squeeze(-1)).mean().backward()
    opt.step()
    a, g = opt.factors()["mean"]
    torch.testing.assert_close(g, torch.tensor([[1.0 / 0.49]]), **TOL)
    # named_parameters lists log_std before the submodule's weight and bias.
    torch.testing.assert_close(dense_fisher(policy, obs)[1:, 1:], torch.kron(a, g), **TOL)
    fisher = PolicyFisher(policy, params=list(policy.mean.parameters()))
    grad = randn(fisher.dim, seed=14)
    cg = natural_gradient(fisher, obs, grad, damping=0.03, iters=3 * fisher.dim, tol=1e-30)
    kfac = kfac_flat_direction(opt, fisher.params, grad)
    assert kfac_relative_error(kfac, cg) < 1e-10
    assert kfac_relative_error(grad, cg) > 0.1  # the metric does matter here
