"""Lanczos against eigvalsh: known diagonals, random SPD matrices and the dense policy Fisher."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from geometry_reference import dense_fisher, make, randn

from rl_ig.fisher import PolicyFisher
from rl_ig.geometry import lanczos, top_eigenvalues

TOL = {"rtol": 1e-10, "atol": 1e-12}


def _counting(matrix: torch.Tensor) -> tuple[list[int], Callable[[torch.Tensor], torch.Tensor]]:
    calls = [0]

    def matvec(v: torch.Tensor) -> torch.Tensor:
        calls[0] += 1
        return matrix @ v

    return calls, matvec


def _run(matrix: torch.Tensor, iters: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return lanczos(lambda v: matrix @ v, matrix.shape[0], iters, generator, matrix.dtype, "cpu")


def test_lanczos_recovers_a_known_diagonal() -> None:
    values = torch.arange(1.0, 9.0)
    got = _run(torch.diag(values), iters=8)
    torch.testing.assert_close(got, values.flip(0), **TOL)


def test_lanczos_on_a_random_spd_matrix_with_iters_capped_at_dim() -> None:
    q, _ = torch.linalg.qr(randn(12, 12, seed=1))
    matrix = q @ torch.diag(torch.logspace(-2, 2, 12)) @ q.T
    got = _run(matrix, iters=100)  # capped at 12 steps
    assert got.shape == (12,)
    torch.testing.assert_close(got, torch.linalg.eigvalsh(matrix).flip(0), rtol=1e-9, atol=1e-11)


def test_lanczos_extremes_converge_before_the_interior() -> None:
    q, _ = torch.linalg.qr(randn(40, 40, seed=2))
    spectrum = torch.cat([torch.tensor([50.0, 30.0]), torch.linspace(0.1, 1.0, 38)])
    matrix = q @ torch.diag(spectrum) @ q.T
    got = _run(matrix, iters=15)
    assert got.shape == (15,)
    torch.testing.assert_close(got[:2], torch.tensor([50.0, 30.0]), rtol=1e-10, atol=0.0)


def test_lanczos_stops_at_an_invariant_subspace() -> None:
    # Three distinct eigenvalues: the Krylov space has dimension 3 whatever the start vector.
    matrix = torch.diag(torch.tensor([5.0, 5.0, 3.0, 3.0, 3.0, 1.0]))
    calls, matvec = _counting(matrix)
    generator = torch.Generator().manual_seed(3)
    got = lanczos(matvec, 6, 6, generator, torch.float64, "cpu")
    assert calls[0] == 3
    torch.testing.assert_close(got, torch.tensor([5.0, 3.0, 1.0]), **TOL)


def test_lanczos_of_the_zero_operator_is_one_zero() -> None:
    got = _run(torch.zeros(4, 4), iters=4)
    assert got.tolist() == [0.0]


def test_lanczos_is_reproducible_from_its_generator() -> None:
    q, _ = torch.linalg.qr(randn(20, 20, seed=4))
    matrix = q @ torch.diag(torch.linspace(1.0, 2.0, 20)) @ q.T
    first, again, other = _run(matrix, 5, seed=7), _run(matrix, 5, seed=7), _run(matrix, 5, seed=8)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


@pytest.mark.parametrize("kind", ["gaussian", "categorical"])
def test_top_eigenvalues_of_the_policy_fisher(kind: str) -> None:
    policy, obs = make(kind, seed=5)
    if kind == "gaussian":
        # The log-std block of F is exactly 2·I (a repeated eigenvalue, which Lanczos from one
        # start vector need not find twice); a small σ lifts the mean block's top 3 above it.
        with torch.no_grad():
            policy.log_std.fill_(-1.5)
    fisher = PolicyFisher(policy)
    expected = torch.linalg.eigvalsh(dense_fisher(policy, obs)).flip(0)[:3]
    assert (expected[:2] - expected[1:]).min() > 1e-3  # three distinct values
    assert kind != "gaussian" or expected[2] > 2.5
    got = top_eigenvalues(fisher, obs, k=3, iters=fisher.dim, seed=1)
    torch.testing.assert_close(got, expected, rtol=1e-8, atol=0.0)


def test_top_eigenvalues_leave_the_global_rng_alone() -> None:
    policy, obs = make("gaussian", seed=6)
    fisher = PolicyFisher(policy)
    state = torch.get_rng_state()
    first = top_eigenvalues(fisher, obs, k=2, iters=10, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(first, top_eigenvalues(fisher, obs, k=2, iters=10, seed=3))
