"""Fisher norms, natural gradients and Fisher cosines against a dense Jacobian Fisher."""

from __future__ import annotations

import math

import pytest
import torch
from geometry_reference import dense_fisher, make, randn

from rl_ig.fisher import PolicyFisher
from rl_ig.geometry import fisher_cosine, natural_gradient, natural_gradient_cosine, step_norms

KINDS = ["gaussian", "categorical"]
TOL = {"rtol": 1e-10, "atol": 1e-12}


def _dense_cosine(f: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x @ f @ y) / ((x @ f @ x) * (y @ f @ y)).sqrt()


@pytest.mark.parametrize("kind", KINDS)
def test_step_norms_are_fisher_and_euclidean_lengths(kind: str) -> None:
    policy, obs = make(kind, seed=3)
    fisher, f = PolicyFisher(policy), dense_fisher(policy, obs)
    step = randn(fisher.dim, seed=4)
    fisher_norm, euclidean_norm = step_norms(fisher, obs, step)
    torch.testing.assert_close(fisher_norm, (step @ f @ step).sqrt(), **TOL)
    torch.testing.assert_close(euclidean_norm, step.pow(2).sum().sqrt(), **TOL)


@pytest.mark.parametrize("kind", KINDS)
def test_natural_gradient_is_the_damped_dense_solve(kind: str) -> None:
    policy, obs = make(kind, seed=5)
    fisher, f = PolicyFisher(policy), dense_fisher(policy, obs)
    grad = randn(fisher.dim, seed=6)
    expected = torch.linalg.solve(f + 0.1 * torch.eye(fisher.dim), grad)
    got = natural_gradient(fisher, obs, grad, damping=0.1, iters=3 * fisher.dim, tol=1e-30)
    torch.testing.assert_close(got, expected, rtol=1e-8, atol=1e-10)
    few = natural_gradient(fisher, obs, grad, damping=0.1, iters=2, tol=1e-30)
    assert not torch.allclose(few, expected, rtol=1e-3)  # the iteration budget is honoured


@pytest.mark.parametrize("kind", KINDS)
def test_cosine_of_the_natural_gradient_with_itself_is_one(kind: str) -> None:
    policy, obs = make(kind, seed=7)
    fisher, f = PolicyFisher(policy), dense_fisher(policy, obs)
    ng = torch.linalg.solve(f + 0.1 * torch.eye(fisher.dim), randn(fisher.dim, seed=8))
    torch.testing.assert_close(fisher_cosine(fisher, obs, ng, ng), torch.tensor(1.0), **TOL)
    torch.testing.assert_close(fisher_cosine(fisher, obs, -ng, ng), torch.tensor(-1.0), **TOL)


@pytest.mark.parametrize("kind", KINDS)
def test_cosine_of_random_vectors_is_the_dense_formula(kind: str) -> None:
    policy, obs = make(kind, seed=9)
    fisher, f = PolicyFisher(policy), dense_fisher(policy, obs)
    step, direction = randn(fisher.dim, seed=10), randn(fisher.dim, seed=11)
    expected = _dense_cosine(f, step, direction)
    assert abs(expected) < 0.99  # not a degenerate case
    torch.testing.assert_close(fisher_cosine(fisher, obs, step, direction), expected, **TOL)
    # Scale-invariant, symmetric, and not the Euclidean cosine.
    torch.testing.assert_close(fisher_cosine(fisher, obs, 3.0 * step, direction), expected, **TOL)
    torch.testing.assert_close(fisher_cosine(fisher, obs, direction, step), expected, **TOL)
    euclidean = step @ direction / (step.norm() * direction.norm())
    assert abs(expected - euclidean) > 1e-3


def test_cosine_is_nan_for_a_step_of_zero_fisher_length() -> None:
    policy, obs = make("gaussian", seed=12)
    fisher = PolicyFisher(policy)
    direction, zero = randn(fisher.dim, seed=13), torch.zeros(fisher.dim)
    assert math.isnan(fisher_cosine(fisher, obs, zero, direction).item())
    assert math.isnan(fisher_cosine(fisher, obs, direction, zero).item())
    assert math.isnan(natural_gradient_cosine(fisher, obs, direction, zero).item())


def test_natural_gradient_cosine_combines_the_two() -> None:
    policy, obs = make("categorical", seed=14)
    fisher, f = PolicyFisher(policy), dense_fisher(policy, obs)
    step, grad = randn(fisher.dim, seed=15), randn(fisher.dim, seed=16)
    ng = torch.linalg.solve(f + 0.05 * torch.eye(fisher.dim), grad)
    got = natural_gradient_cosine(
        fisher, obs, step, grad, damping=0.05, iters=3 * fisher.dim, tol=1e-30
    )
    torch.testing.assert_close(got, _dense_cosine(f, step, ng), rtol=1e-8, atol=1e-10)
    exact = natural_gradient_cosine(
        fisher, obs, 0.3 * ng, grad, damping=0.05, iters=3 * fisher.dim, tol=1e-30
    )
    torch.testing.assert_close(exact, torch.tensor(1.0), rtol=1e-8, atol=1e-10)
