"""Dense float64 references for the K-FAC tests: Kronecker solves and hand-built factors."""

from __future__ import annotations

import torch
from torch import nn

DT = torch.float64


def vec(m: torch.Tensor) -> torch.Tensor:
    """Column-major ``vec`` of ``m: (r, c)``, so that ``(A ⊗ G) vec(V) = vec(G V A)``."""
    return m.T.reshape(-1)


def unvec(x: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    return x.reshape(cols, rows).T


def dense_solve(a: torch.Tensor, g: torch.Tensor, v: torch.Tensor, damping: float) -> torch.Tensor:
    """``(A ⊗ G + λI)⁻¹ vec(V)`` as an ``(out, in)`` matrix, by a dense solve."""
    k = torch.kron(a, g) + damping * torch.eye(a.shape[0] * g.shape[0], dtype=a.dtype)
    return unvec(torch.linalg.solve(k, vec(v)), *v.shape)


def with_ones(a: torch.Tensor) -> torch.Tensor:
    """``ā = [a, 1]`` row-wise: ``(N, d) → (N, d+1)``."""
    return torch.cat([a, torch.ones(a.shape[0], 1, dtype=a.dtype)], dim=1)


def outer_mean(rows: torch.Tensor) -> torch.Tensor:
    """``mean_i r_i r_iᵀ`` for rows ``(N, d)``, by an explicit sum of outer products."""
    return sum(torch.outer(r, r) for r in rows) / rows.shape[0]


def wbar(layer: nn.Module, grad: bool = False) -> torch.Tensor:
    """``[W, b]`` (or ``[∇W, ∇b]``) of a Linear/Conv2d layer as ``(out, in[+1])``."""
    w = layer.weight.grad if grad else layer.weight
    mat = w.detach().reshape(w.shape[0], -1)
    if layer.bias is None:
        return mat.clone()
    b = layer.bias.grad if grad else layer.bias
    return torch.cat([mat, b.detach().reshape(-1, 1)], dim=1)
