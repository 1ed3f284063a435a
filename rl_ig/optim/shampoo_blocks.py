"""Shampoo's preconditioner blocks and matrix inverse roots (Gupta et al. 2018; Shi et al. 2023).

A parameter with ``ndim >= 2`` is viewed as the matrix ``(m, n) = (shape[0], prod(shape[1:]))``
(a conv weight ``(out, in, kh, kw)`` as ``(out, in·kh·kw)``). Each dimension is cut into pieces
of at most ``max_preconditioner_dim``, and each block ``G_b = G[rows, cols]`` of the gradient gets
its own factors ``L_b: (r, r)``, ``R_b: (c, c)`` (a block-diagonal preconditioner). A block's
direction is ``(L̂_b + εI)^(-1/4) M_b (R̂_b + εI)^(-1/4)``, two matmuls with cached roots, where
``M`` is the search direction (the gradient, or its moving average) and ``L̂ = L / (1 − β₂ᵗ)``.

Blocks are independent of each other: :class:`ShampooBlock` is the unit of work that a
distributed optimizer can hand to one rank.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from rl_ig.optim.kronecker import robust_eigh

FACTOR_KEYS = ("L", "R")


def matrix_shape(shape: torch.Size) -> tuple[int, int]:
    """``(shape[0], prod(shape[1:]))``: the matrix view of a parameter with ``ndim >= 2``."""
    return shape[0], math.prod(shape[1:])


def inverse_root(
    matrix: torch.Tensor, order: int, epsilon: float
) -> tuple[torch.Tensor | None, int]:
    """``(matrix + εI)^(-1/order)`` by symmetric eigendecomposition.

    ``eigh`` runs in the matrix's dtype; if it fails or gives non-finite values it is retried once
    in float64 on ``matrix + 10·ε·I`` (so that root is of ``matrix + 11·ε·I``), see
    :func:`rl_ig.optim.kronecker.robust_eigh`.

    Args:
        matrix: symmetric positive semi-definite ``(n, n)``.
        order: the root, e.g. 4 for a factor of a matrix-shaped parameter.
        epsilon: ε > 0.

    Returns:
        ``(root, retries)``: ``root: (n, n)`` in ``matrix.dtype``, or None if both attempts failed
        or the root is not finite; ``retries`` is 0 or 1.
    """
    eigen, retries = robust_eigh(matrix, epsilon)
    if eigen is None:
        return None, retries
    root = (eigen.Q * (eigen.d + epsilon).pow(-1.0 / order)) @ eigen.Q.T
    return (root if bool(torch.isfinite(root).all()) else None), retries


def block_slices(size: int, max_dim: int) -> list[slice]:
    """Consecutive pieces ``[0, d), [d, 2d), …`` of ``range(size)``, ``d = max_dim``."""
    return [slice(start, min(start + max_dim, size)) for start in range(0, size, max_dim)]


def graft_scale(graft: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """``‖graft‖ / ‖direction‖`` (Frobenius) as a 0-d tensor; 0 where ``direction`` is 0."""
    norm = torch.linalg.vector_norm(direction)
    ratio = torch.linalg.vector_norm(graft) / norm
    return torch.where(norm > 0, ratio, torch.zeros_like(ratio))


class ShampooBlock:
    """Block ``[rows, cols]`` of a parameter's matrix view, with its own factors and roots.

    The tensors live in the parameter's optimizer state, in lists indexed by ``index``, so that
    ``state_dict`` carries them: ``state["L"][index]: (r, r)``, ``state["R"][index]: (c, c)`` and
    their inverse 4th roots ``state["L_root"][index]``, ``state["R_root"][index]`` (None until
    first computed).
    """

    __slots__ = ("cols", "index", "rows", "state")

    def __init__(self, state: dict[str, Any], index: int, rows: slice, cols: slice) -> None:
        self.state, self.index, self.rows, self.cols = state, index, rows, cols

    @property
    def has_roots(self) -> bool:
        """Whether the inverse roots have been computed (or set to a fallback) at least once."""
        return self.state["L_root"][self.index] is not None

    def update_factors(self, grad: torch.Tensor, beta2: float) -> None:
        """``L ← β₂L + (1 − β₂)G_bG_bᵀ``, ``R ← β₂R + (1 − β₂)G_bᵀG_b``; a plain sum if β₂ = 1.

        Args:
            grad: the whole gradient's matrix view ``(m, n)``, in the factors' dtype.
            beta2: factor decay in (0, 1].
        """
        g = grad[self.rows, self.cols]
        alpha = 1.0 - beta2 if beta2 < 1.0 else 1.0
        self.state["L"][self.index].addmm_(g, g.T, beta=beta2, alpha=alpha)
        self.state["R"][self.index].addmm_(g.T, g, beta=beta2, alpha=alpha)

    def refresh_roots(self, epsilon: float, correction: float, info: dict[str, float]) -> None:
        """Recompute ``(X / correction + εI)^(-1/4)`` for ``X = L, R``.

        A factor whose root cannot be computed keeps its previous root (the identity if it has
        none); ``info["eigh_retries"]`` and ``info["eigh_fallbacks"]`` count what happened.
        """
        for key in FACTOR_KEYS:
            factor = self.state[key][self.index]
            if correction != 1.0:
                factor = factor / correction
            root, retries = inverse_root(factor, 4, epsilon)
            info["eigh_retries"] += retries
            roots = self.state[key + "_root"]
            if root is None:
                info["eigh_fallbacks"] += 1
                if roots[self.index] is None:
                    roots[self.index] = torch.eye(
                        factor.shape[0], dtype=factor.dtype, device=factor.device
                    )
                continue
            roots[self.index] = root
        info["root_updates"] += 1

    def compute_direction(self, search: torch.Tensor, graft: torch.Tensor | None) -> torch.Tensor:
        """``L_root M_b R_root``, rescaled to the norm of ``graft_b`` when grafting.

        Args:
            search: the search direction's matrix view ``(m, n)``, in the factors' dtype.
            graft: the grafting method's direction ``(m, n)``, or None (no grafting).

        Returns:
            The block's direction ``(r, c)``.
        """
        l_root = self.state["L_root"][self.index]
        r_root = self.state["R_root"][self.index]
        direction = l_root @ search[self.rows, self.cols] @ r_root
        if graft is not None:
            direction.mul_(graft_scale(graft[self.rows, self.cols], direction))
        return direction


def block_pairs(shape: tuple[int, int], max_dim: int) -> list[tuple[slice, slice]]:
    """``(rows, cols)`` of every block of an ``(m, n)`` matrix view, row-major."""
    rows, cols = block_slices(shape[0], max_dim), block_slices(shape[1], max_dim)
    return [(r, c) for r in rows for c in cols]


def init_block_state(
    state: dict[str, Any],
    shape: tuple[int, int],
    max_dim: int,
    dtype: torch.dtype,
    device: Any,
    mine: Sequence[bool] | None = None,
) -> None:
    """Zero factors and empty roots for every block of an ``(m, n)`` matrix view.

    ``state["block_dim"]`` records ``max_dim``: the blocking is fixed when the state is created.
    With ``mine`` (one flag per block), the factors of the blocks not marked are None.
    """
    pairs = block_pairs(shape, max_dim)
    owned = [True] * len(pairs) if mine is None else list(mine)
    state["block_dim"] = max_dim
    state["L"] = [
        _zeros(r.stop - r.start, dtype, device) if o else None for (r, _), o in zip(pairs, owned)
    ]
    state["R"] = [
        _zeros(c.stop - c.start, dtype, device) if o else None for (_, c), o in zip(pairs, owned)
    ]
    state["L_root"] = [None] * len(pairs)
    state["R_root"] = [None] * len(pairs)


def make_blocks(state: dict[str, Any], shape: tuple[int, int]) -> list[ShampooBlock]:
    """The blocks of an ``(m, n)`` matrix view whose state :func:`init_block_state` created."""
    pairs = block_pairs(shape, state["block_dim"])
    return [ShampooBlock(state, i, r, c) for i, (r, c) in enumerate(pairs)]


def _zeros(n: int, dtype: torch.dtype, device: Any) -> torch.Tensor:
    return torch.zeros(n, n, dtype=dtype, device=device)


def assemble(
    blocks: list[ShampooBlock], search: torch.Tensor, graft: torch.Tensor | None
) -> torch.Tensor:
    """The preconditioned direction ``(m, n)`` of a parameter, block by block."""
    if len(blocks) == 1:
        return blocks[0].compute_direction(search, graft)
    out = torch.empty_like(search)
    for block in blocks:
        out[block.rows, block.cols] = block.compute_direction(search, graft)
    return out


def assemble_owned(
    blocks: list[ShampooBlock], search: torch.Tensor, graft: torch.Tensor | None
) -> torch.Tensor:
    """The direction ``(m, n)`` with ``blocks`` filled in and zeros elsewhere."""
    out = torch.zeros_like(search)
    for block in blocks:
        out[block.rows, block.cols] = block.compute_direction(search, graft)
    return out
