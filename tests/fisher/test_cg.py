"""Conjugate gradient against a dense solve."""

from __future__ import annotations

import pytest
import torch

from rl_ig.fisher import conjugate_gradient


def _spd(n: int, cond: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    eig = torch.logspace(0, torch.log10(torch.tensor(cond)).item(), n, dtype=torch.float64)
    return q @ torch.diag(eig) @ q.T


@pytest.mark.parametrize("n,cond", [(5, 10.0), (20, 1e3), (40, 1e4)])
def test_cg_matches_linalg_solve(n: int, cond: float) -> None:
    a = _spd(n, cond, seed=n)
    b = torch.randn(n, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    x = conjugate_gradient(lambda v: a @ v, b, iters=4 * n, tol=1e-30)
    torch.testing.assert_close(x, torch.linalg.solve(a, b), rtol=1e-8, atol=1e-10)


def test_cg_is_exact_in_n_steps_for_distinct_eigenvalues() -> None:
    a = torch.diag(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    b = torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64)
    x = conjugate_gradient(lambda v: a @ v, b, iters=3, tol=0.0)
    torch.testing.assert_close(x, torch.tensor([1.0, 0.5, 1 / 3], dtype=torch.float64))


def test_cg_respects_iteration_budget_and_tolerance() -> None:
    a = _spd(10, 100.0, seed=0)
    b = torch.ones(10, dtype=torch.float64)
    calls = []

    def matvec(v: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return a @ v

    conjugate_gradient(matvec, b, iters=3, tol=0.0)
    assert len(calls) == 3
    calls.clear()
    conjugate_gradient(matvec, b, iters=50, tol=1e6)  # rᵀr = 10 is already below tol
    assert not calls


def test_cg_bad_input() -> None:
    with pytest.raises(ValueError, match="flat vector"):
        conjugate_gradient(lambda v: v, torch.ones(2, 2), iters=2)
    with pytest.raises(ValueError, match="iters must be an int >= 1"):
        conjugate_gradient(lambda v: v, torch.ones(2), iters=0)
    with pytest.raises(ValueError, match="tol must be >= 0"):
        conjugate_gradient(lambda v: v, torch.ones(2), iters=2, tol=-1.0)
