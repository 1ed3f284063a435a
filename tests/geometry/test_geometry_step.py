"""at_parameters and measure_step: parameters restored bit for bit, RNG untouched, values equal
to the individual diagnostics evaluated at θ_old."""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch
from geometry_reference import dense_fisher, flat, make, randn
from torch.nn.utils import vector_to_parameters

from rl_ig.fisher import PolicyFisher, detach_distribution
from rl_ig.geometry import (
    StepGeometry,
    at_parameters,
    kl_stats,
    measure_step,
    natural_gradient_cosine,
    step_norms,
    surrogate_gain,
    top_eigenvalues,
)

TOL = {"rtol": 1e-12, "atol": 1e-14}


def _snapshot(policy: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in policy.parameters()]


def _bit_identical(policy: torch.nn.Module, saved: list[torch.Tensor]) -> bool:
    return all(torch.equal(p, s) for p, s in zip(policy.parameters(), saved))


def test_at_parameters_swaps_in_theta_and_restores_even_on_error() -> None:
    policy, _ = make("gaussian")
    saved, theta = _snapshot(policy), randn(flat(policy).numel(), seed=1)
    with at_parameters(list(policy.parameters()), theta):
        assert torch.equal(flat(policy), theta)
        theta.add_(1.0)  # the parameters do not alias theta
        assert not torch.equal(flat(policy), theta)
    assert _bit_identical(policy, saved)
    with pytest.raises(RuntimeError, match="inside"), at_parameters(policy.parameters(), theta):
        raise RuntimeError("inside")
    assert _bit_identical(policy, saved)


def test_the_fisher_inside_at_parameters_is_that_of_theta() -> None:
    # vector_to_parameters would rebind .data without a version bump, so the Fisher's cached
    # linearisation at the current point would be served for theta too.
    policy, obs = make("categorical", seed=2)
    fisher, theta = PolicyFisher(policy), flat(policy) + 0.5 * randn(flat(policy).numel(), seed=3)
    v = randn(fisher.dim, seed=4)
    at_current = fisher.fvp(obs, v)
    moved = copy.deepcopy(policy)
    vector_to_parameters(theta, moved.parameters())
    with at_parameters(fisher.params, theta):
        torch.testing.assert_close(fisher.fvp(obs, v), dense_fisher(moved, obs) @ v, **TOL)
    torch.testing.assert_close(fisher.fvp(obs, v), at_current, **TOL)


def _taken_step(kind: str, seed: int) -> tuple:
    policy, obs = make(kind, seed=seed)
    fisher = PolicyFisher(policy)
    theta_old = flat(policy)
    old = detach_distribution(policy(obs))
    step, grad = 0.1 * randn(fisher.dim, seed=seed + 1), randn(fisher.dim, seed=seed + 2)
    with torch.no_grad():
        vector_to_parameters(theta_old + step, policy.parameters())
    return policy, obs, fisher, theta_old, old, step, grad


@pytest.mark.parametrize("kind", ["gaussian", "categorical"])
def test_measure_step_restores_parameters_and_rng_and_matches_the_parts(kind: str) -> None:
    policy, obs, fisher, theta_old, old, step, grad = _taken_step(kind, seed=5)
    saved, rng = _snapshot(policy), torch.get_rng_state()
    got = measure_step(
        fisher, obs, old, theta_old, step, grad, cg_iters=20, cg_damping=0.01, eig_k=3
    )
    assert _bit_identical(policy, saved)
    assert torch.equal(torch.get_rng_state(), rng)
    kl_mean, kl_max = kl_stats(fisher, obs, old)
    at_old = copy.deepcopy(policy)
    vector_to_parameters(theta_old, at_old.parameters())
    old_fisher = PolicyFisher(at_old)
    norms = step_norms(old_fisher, obs, step)
    cosine = natural_gradient_cosine(old_fisher, obs, step, grad, damping=0.01, iters=20)
    expected = {
        "kl_mean": kl_mean,
        "kl_max": kl_max,
        "fisher_norm": norms[0],
        "euclidean_norm": norms[1],
        "ng_cosine": cosine,
        "predicted_gain": surrogate_gain(grad, step),
    }
    for name, value in expected.items():
        assert math.isclose(getattr(got, name), float(value), rel_tol=1e-12), name
    eigenvalues = top_eigenvalues(old_fisher, obs, k=3)
    torch.testing.assert_close(torch.tensor(got.fisher_eigenvalues), eigenvalues, **TOL)
    assert got.kl_mean > 0 and got.fisher_norm > 0  # a real step was measured at θ_old
    assert not math.isclose(got.fisher_norm, float(step_norms(fisher, obs, step)[0]))


def test_a_natural_gradient_step_has_cosine_one_and_its_gain() -> None:
    policy, obs = make("gaussian", seed=8)
    fisher, theta_old = PolicyFisher(policy), flat(policy)
    old = detach_distribution(policy(obs))
    grad = randn(fisher.dim, seed=9)
    ng = torch.linalg.solve(dense_fisher(policy, obs) + 0.1 * torch.eye(fisher.dim), grad)
    with torch.no_grad():
        vector_to_parameters(theta_old + 0.05 * ng, policy.parameters())
    got = measure_step(
        fisher,
        obs,
        old,
        theta_old,
        0.05 * ng,
        grad,
        cg_iters=3 * fisher.dim,
        cg_damping=0.1,
        cg_tol=1e-30,
    )
    assert got.ng_cosine == pytest.approx(1.0, abs=1e-9)
    assert got.predicted_gain == pytest.approx(0.05 * float(grad @ ng), rel=1e-12)


def test_as_dict_keys_and_values() -> None:
    geometry = StepGeometry(
        kl_mean=0.01,
        kl_max=0.05,
        fisher_norm=0.2,
        euclidean_norm=1.5,
        ng_cosine=0.9,
        predicted_gain=0.3,
        fisher_eigenvalues=(4.0, 2.0),
    )
    assert geometry.as_dict() == {
        "geometry/kl_mean": 0.01,
        "geometry/kl_max": 0.05,
        "geometry/fisher_norm": 0.2,
        "geometry/euclidean_norm": 1.5,
        "geometry/ng_cosine": 0.9,
        "geometry/predicted_gain": 0.3,
        "geometry/fisher_eig_1": 4.0,
        "geometry/fisher_eig_2": 2.0,
    }
    plain = dataclasses.replace(geometry, fisher_eigenvalues=())
    assert list(plain.as_dict(prefix="")) == [
        "kl_mean",
        "kl_max",
        "fisher_norm",
        "euclidean_norm",
        "ng_cosine",
        "predicted_gain",
    ]
    with pytest.raises(dataclasses.FrozenInstanceError):
        geometry.kl_mean = 1.0  # type: ignore[misc]


def test_measure_step_without_eigenvalues_reports_none() -> None:
    policy, obs, fisher, theta_old, old, step, grad = _taken_step("categorical", seed=10)
    got = measure_step(fisher, obs, old, theta_old, step, grad)
    assert got.fisher_eigenvalues == ()
    assert not any(key.startswith("geometry/fisher_eig") for key in got.as_dict())
