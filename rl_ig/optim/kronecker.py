"""Kronecker-factored solves in the eigenbases of the factors (pure tensor functions).

With ``A = Q_A diag(d_A) Q_Aᵀ: (n, n)`` and ``G = Q_G diag(d_G) Q_Gᵀ: (m, m)``, the column-major
``vec`` of ``V: (m, n)`` satisfies ``(A ⊗ G) vec(V) = vec(G V A)``, and every damped Kronecker
metric used by K-FAC is diagonal in the basis ``Q_A ⊗ Q_G``:

    F̂ vec(V) = vec(Q_G [(Q_Gᵀ V Q_A) ⊙ S] Q_Aᵀ),   F̂⁻¹ vec(V) = vec(Q_G [(Q_Gᵀ V Q_A) ⊘ S] Q_Aᵀ)

with the eigenvalue matrix ``S: (m, n)`` given by :func:`exact_scale`. Factored Tikhonov damping
(Martens & Grosse 2015, §6.3) needs no eigenbasis:

    F̂ = (A + π√λ I) ⊗ (G + √λ/π I),   F̂⁻¹ vec(V) = vec((G + √λ/π I)⁻¹ V (A + π√λ I)⁻¹)

with the two inverses from Cholesky factorisations (:class:`FactoredMetric`).
"""

from __future__ import annotations

import math
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


def exact_scale(a: Eigen, g: Eigen, damping: float) -> torch.Tensor:
    """Eigenvalues ``S = d_G d_Aᵀ + λ: (m, n)`` of ``F̂ = A ⊗ G + λI`` in the basis ``Q_A ⊗ Q_G``."""
    return g.d[:, None] * a.d[None, :] + damping


def kron_solve(v: torch.Tensor, a: Eigen, g: Eigen, scale: torch.Tensor) -> torch.Tensor:
    """``F̂⁻¹ vec(V)`` as a matrix: ``Q_G [(Q_Gᵀ V Q_A) ⊘ S] Q_Aᵀ``, ``V: (m, n)``."""
    return g.Q @ ((g.Q.T @ v @ a.Q) / scale) @ a.Q.T


def kron_mul(v: torch.Tensor, a: Eigen, g: Eigen, scale: torch.Tensor) -> torch.Tensor:
    """``F̂ vec(V)`` as a matrix: ``Q_G [(Q_Gᵀ V Q_A) ⊙ S] Q_Aᵀ``, ``V: (m, n)``."""
    return g.Q @ ((g.Q.T @ v @ a.Q) * scale) @ a.Q.T


class EigenMetric(NamedTuple):
    """``F̂ = A ⊗ G + λI`` held in the eigenbases of ``A`` and ``G``."""

    a: Eigen
    g: Eigen
    scale: torch.Tensor  # (m, n), from exact_scale

    @property
    def dtype(self) -> torch.dtype:
        return self.a.Q.dtype

    def solve(self, v: torch.Tensor) -> torch.Tensor:
        return kron_solve(v, self.a, self.g, self.scale)

    def mul(self, v: torch.Tensor) -> torch.Tensor:
        return kron_mul(v, self.a, self.g, self.scale)


def factored_shifts(a: torch.Tensor, g: torch.Tensor, damping: float) -> tuple[float, float]:
    """``(π√λ, √λ/π)`` with ``π = sqrt((tr A / dim A) / (tr G / dim G))`` (Martens & Grosse 2015,
    §6.3), ``π = 1`` when that is not a finite positive number."""
    mean_a, mean_g = float(a.diagonal().mean()), float(g.diagonal().mean())
    ratio = mean_a / mean_g if mean_a > 0 and mean_g > 0 else math.nan
    pi = math.sqrt(ratio) if math.isfinite(ratio) and ratio > 0 else 1.0
    root = math.sqrt(damping)
    return pi * root, root / pi


def _try_cholesky_inverse(matrix: torch.Tensor) -> torch.Tensor | None:
    # Looked up at call time so a test can make it fail.
    lower, info = torch.linalg.cholesky_ex(matrix)
    if int(info) != 0:
        return None
    inverse = torch.cholesky_inverse(lower)
    return inverse if all_finite(inverse) else None


def damped_inverse(
    matrix: torch.Tensor, shift: float, jitter: float
) -> tuple[torch.Tensor | None, int]:
    """``(M + shift·I)⁻¹`` by Cholesky, retried once in float64 with ``10·jitter`` more damping.

    Returns:
        ``(inverse, retries)``: the inverse in ``matrix.dtype``, or None if both factorisations
        failed or gave non-finite values; ``retries`` is 0 or 1.
    """
    eye = torch.eye(matrix.shape[0], dtype=matrix.dtype, device=matrix.device)
    inverse = _try_cholesky_inverse(matrix + shift * eye)
    if inverse is not None:
        return inverse, 0
    inverse = _try_cholesky_inverse(matrix.double() + (shift + 10.0 * jitter) * eye.double())
    return (None if inverse is None else inverse.to(matrix.dtype)), 1


class FactoredMetric(NamedTuple):
    """``F̂ = (A + a_shift·I) ⊗ (G + g_shift·I)`` with the two explicit inverses, so that
    ``F̂⁻¹ vec(V) = vec(G⁻¹ V A⁻¹)`` takes two products."""

    a: torch.Tensor
    g: torch.Tensor
    a_shift: float
    g_shift: float
    a_inv: torch.Tensor
    g_inv: torch.Tensor

    @property
    def dtype(self) -> torch.dtype:
        return self.a.dtype

    def solve(self, v: torch.Tensor) -> torch.Tensor:
        return self.g_inv @ v @ self.a_inv

    def mul(self, v: torch.Tensor) -> torch.Tensor:
        gv = self.g @ v + self.g_shift * v
        return gv @ self.a + self.a_shift * gv


def running_average(old: torch.Tensor | None, batch: torch.Tensor, decay: float) -> torch.Tensor:
    """``X ← decay·X + (1 − decay)·X_batch`` (a new tensor: factors are never changed in place,
    so a state_dict taken earlier keeps its values); the first update (or a non-finite X) sets
    X_batch.

    A non-finite batch statistic leaves a finite ``X`` unchanged, so one bad batch cannot
    poison the running average.
    """
    if old is None or not all_finite(old):
        return batch.clone()
    if not all_finite(batch):
        return old
    return old.mul(decay).add_(batch, alpha=1.0 - decay)
