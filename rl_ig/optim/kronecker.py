"""Kronecker-factored solves in the eigenbases of the factors (pure tensor functions).

With ``A = Q_A diag(d_A) Q_Aᵀ: (n, n)`` and ``G = Q_G diag(d_G) Q_Gᵀ: (m, m)``, the column-major
``vec`` of ``V: (m, n)`` satisfies ``(A ⊗ G) vec(V) = vec(G V A)``, and every damped Kronecker
metric used by K-FAC is diagonal in the basis ``Q_A ⊗ Q_G``:

    F̂ vec(V) = vec(Q_G [(Q_Gᵀ V Q_A) ⊙ S] Q_Aᵀ),   F̂⁻¹ vec(V) = vec(Q_G [(Q_Gᵀ V Q_A) ⊘ S] Q_Aᵀ)

with the eigenvalue matrix ``S: (m, n)`` given by :func:`eigen_scale`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class Eigen(NamedTuple):
    """Eigendecomposition of a symmetric PSD factor: ``M = Q diag(d) Qᵀ``, ``d >= 0``."""

    Q: torch.Tensor
    d: torch.Tensor


def all_finite(*tensors: torch.Tensor) -> bool:
    """Whether every entry of every tensor is finite, read from one sum per tensor (a single
    pass, where ``isfinite(t).all()`` takes four): a NaN or infinite entry makes the sum so; a
    sum that overflows the dtype's range (about 3e38 in float32) counts as non-finite too."""
    return all(bool(torch.isfinite(t.sum())) for t in tensors)


def _try_eigh(matrix: torch.Tensor) -> Eigen | None:
    try:
        # Looked up at call time so a test can make it fail.
        d, q = torch.linalg.eigh(matrix)
    except RuntimeError:
        return None
    return Eigen(q, d.clamp_min(0.0)) if all_finite(d, q) else None


def robust_eigh(matrix: torch.Tensor, jitter: float) -> tuple[Eigen | None, int]:
    """Eigendecompose a factor, retrying once in float64 with extra damping.

    Args:
        matrix: symmetric factor ``(n, n)``, float32 or float64.
        jitter: the retry decomposes ``matrix + 10·jitter·I`` in float64 (an ill-conditioned
            float32 factor is the usual reason ``eigh`` fails to converge).

    Returns:
        ``(eigen, retries)``: eigenvalues clamped at 0 from below, in ``matrix.dtype``, or None
        if both attempts raised or gave non-finite values; ``retries`` is 0 or 1.
    """
    eigen = _try_eigh(matrix)
    if eigen is not None:
        return eigen, 0
    eye = torch.eye(matrix.shape[0], dtype=torch.float64, device=matrix.device)
    eigen = _try_eigh(matrix.double() + 10.0 * jitter * eye)
    if eigen is None:
        return None, 1
    return Eigen(eigen.Q.to(matrix.dtype), eigen.d.to(matrix.dtype)), 1


def factored_pi(d_a: torch.Tensor, d_g: torch.Tensor) -> torch.Tensor:
    """``π = sqrt((tr A / dim A) / (tr G / dim G))`` (Martens & Grosse 2015, §6.3); 1 if undefined.

    Args:
        d_a: eigenvalues of ``A``, ``(n,)``.
        d_g: eigenvalues of ``G``, ``(m,)``.
    """
    mean_a, mean_g = d_a.mean(), d_g.mean()
    ok = (mean_a > 0) & (mean_g > 0) & torch.isfinite(mean_a / mean_g)
    return torch.where(ok, (mean_a / mean_g).sqrt(), torch.ones_like(mean_a))


def eigen_scale(a: Eigen, g: Eigen, damping: float, mode: str) -> torch.Tensor:
    """Eigenvalues ``S: (m, n)`` of the damped metric in the basis ``Q_A ⊗ Q_G``.

    * ``"exact"``: ``F̂ = A ⊗ G + λI``, so ``S = d_G d_Aᵀ + λ``.
    * ``"factored"`` (factored Tikhonov, Martens & Grosse 2015, §6.3):
      ``F̂ = (A + π√λ I) ⊗ (G + √λ/π I)``, so ``S = (d_G + √λ/π)(d_A + π√λ)ᵀ``.
    """
    if mode == "exact":
        return g.d[:, None] * a.d[None, :] + damping
    pi = factored_pi(a.d, g.d)
    root = damping**0.5
    return (g.d + root / pi)[:, None] * (a.d + pi * root)[None, :]


def kron_solve(v: torch.Tensor, a: Eigen, g: Eigen, scale: torch.Tensor) -> torch.Tensor:
    """``F̂⁻¹ vec(V)`` as a matrix: ``Q_G [(Q_Gᵀ V Q_A) ⊘ S] Q_Aᵀ``, ``V: (m, n)``."""
    return g.Q @ ((g.Q.T @ v @ a.Q) / scale) @ a.Q.T


def factored_inverses(a: Eigen, g: Eigen, damping: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``((G + √λ/π I)⁻¹, (A + π√λ I)⁻¹)``: the explicit inverses of factored Tikhonov damping,
    so that ``F̂⁻¹ vec(V) = vec(G⁻¹ V A⁻¹)`` takes two products instead of four."""
    pi = factored_pi(a.d, g.d)
    root = damping**0.5
    a_inv = (a.Q / (a.d + pi * root)) @ a.Q.T
    g_inv = (g.Q / (g.d + root / pi)) @ g.Q.T
    return g_inv, a_inv


def kron_mul(v: torch.Tensor, a: Eigen, g: Eigen, scale: torch.Tensor) -> torch.Tensor:
    """``F̂ vec(V)`` as a matrix: ``Q_G [(Q_Gᵀ V Q_A) ⊙ S] Q_Aᵀ``, ``V: (m, n)``."""
    return g.Q @ ((g.Q.T @ v @ a.Q) * scale) @ a.Q.T


def running_average(old: torch.Tensor | None, batch: torch.Tensor, decay: float) -> torch.Tensor:
    """``X ← decay·X + (1 − decay)·X_batch``; the first update (or a non-finite X) sets X_batch.

    A non-finite batch statistic leaves a finite ``X`` unchanged, so one bad batch cannot
    poison the running average.
    """
    if old is None or not all_finite(old):
        return batch.clone()
    if not all_finite(batch):
        return old
    return old * decay + batch * (1.0 - decay)
