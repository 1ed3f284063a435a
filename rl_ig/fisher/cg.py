"""Conjugate gradient for symmetric positive-definite linear systems given as a matvec."""

from __future__ import annotations

from collections.abc import Callable

import torch


def conjugate_gradient(
    matvec: Callable[[torch.Tensor], torch.Tensor],
    b: torch.Tensor,
    iters: int = 10,
    tol: float = 1e-10,
) -> torch.Tensor:
    """Solve ``A x = b`` for symmetric positive-definite ``A`` given only ``v ↦ A v``.

    Hestenes & Stiefel (1952), started from ``x₀ = 0``. Stops after ``iters`` iterations or as
    soon as the squared residual norm ``rᵀr`` falls to ``tol`` or below (the residual
    tolerance of Schulman et al.'s TRPO and of sb3-contrib, so that the two solve alike).

    Args:
        matvec: ``v ↦ A v`` for a flat vector ``v: (n,)``.
        b: right-hand side, ``(n,)``.
        iters: maximum number of iterations (matvecs), at least 1.
        tol: absolute tolerance on ``rᵀr``, at least 0.

    Returns:
        The approximate solution ``x: (n,)``, same dtype and device as ``b``.

    Raises:
        ValueError: for a non-flat ``b``, ``iters < 1`` or ``tol < 0``.
    """
    if b.dim() != 1:
        raise ValueError(f"b must be a flat vector (n,), got shape {tuple(b.shape)}; flatten it")
    if isinstance(iters, bool) or not isinstance(iters, int) or iters < 1:
        raise ValueError(f"iters must be an int >= 1, got {iters!r}")
    if tol < 0:
        raise ValueError(f"tol must be >= 0, got {tol!r}")
    x = torch.zeros_like(b)
    r = b.clone()
    p = b.clone()
    rr = torch.dot(r, r)
    for _ in range(iters):
        if rr.item() <= tol:
            break
        ap = matvec(p)
        pap = torch.dot(p, ap)
        if pap.item() <= 0.0:
            # A is not positive definite along p (round-off or a singular, undamped metric):
            # the current iterate is the best A-conjugate estimate we can trust.
            break
        alpha = rr / pap
        x.add_(alpha * p)
        r.sub_(alpha * ap)
        rr_new = torch.dot(r, r)
        p.mul_(rr_new / rr).add_(r)
        rr = rr_new
    return x
