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


def block_slices(size: int, max_dim: int, even: bool = True) -> list[slice]:
    """Consecutive pieces of ``range(size)``, each at most ``max_dim`` long.

    ``even``: the fewest pieces, ``k = ceil(size / max_dim)``, of sizes differing by at most one
    (784 at 256: four of 196), so that a parameter's blocks share few shapes and are computed in
    batches. Otherwise ``[0, d), [d, 2d), …`` with a shorter last piece (784 at 256: three of 256
    and one of 16), the layout of states saved before ``block_split`` was recorded.
    """
    if not even:
        return [slice(start, min(start + max_dim, size)) for start in range(0, size, max_dim)]
    pieces = -(-size // max_dim)
    base, extra = divmod(size, pieces)
    bounds = [0]
    for i in range(pieces):
        bounds.append(bounds[-1] + base + (1 if i < extra else 0))
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def graft_scale(graft: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """``‖graft_b‖ / ‖direction_b‖`` (Frobenius) of each block of the stacks ``(k, r, c)``, as a
    ``(k, 1, 1)`` tensor; 0 where ``direction_b`` is 0."""
    norm = torch.linalg.vector_norm(direction, dim=(1, 2), keepdim=True)
    ratio = torch.linalg.vector_norm(graft, dim=(1, 2), keepdim=True) / norm
    return torch.where(norm > 0, ratio, torch.zeros_like(ratio))


class ShampooBlock:
    """Block ``[rows, cols]`` of a parameter's matrix view, with its own factors and roots.

    The tensors live in the parameter's optimizer state, in lists indexed by ``index``, so that
    ``state_dict`` carries them: ``state["L"][index]: (r, r)``, ``state["R"][index]: (c, c)`` and
    their inverse 4th roots ``state["L_root"][index]``, ``state["R_root"][index]`` (None until
    first computed). The arithmetic is done for same-shaped blocks together, by
    :class:`rl_ig.optim.shampoo_batches.BlockBatch`.
    """

    __slots__ = ("cols", "index", "rows", "state")

    def __init__(self, state: dict[str, Any], index: int, rows: slice, cols: slice) -> None:
        self.state, self.index, self.rows, self.cols = state, index, rows, cols

    @property
    def shape(self) -> tuple[int, int]:
        """``(r, c)``: the block's rows and columns."""
        return self.rows.stop - self.rows.start, self.cols.stop - self.cols.start


def block_pairs(
    shape: tuple[int, int], max_dim: int, even: bool = True
) -> list[tuple[slice, slice]]:
    """``(rows, cols)`` of every block of an ``(m, n)`` matrix view, row-major."""
    rows, cols = block_slices(shape[0], max_dim, even), block_slices(shape[1], max_dim, even)
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

    ``state["block_dim"]`` records ``max_dim`` and ``state["block_split"]`` the even split of
    :func:`block_slices`: the blocking is fixed when the state is created. With ``mine`` (one
    flag per block), the factors of the blocks not marked are None.
    """
    pairs = block_pairs(shape, max_dim)
    owned = [True] * len(pairs) if mine is None else list(mine)
    state["block_dim"] = max_dim
    state["block_split"] = "even"
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
    pairs = block_pairs(shape, state["block_dim"], even_split(state))
    return [ShampooBlock(state, i, r, c) for i, (r, c) in enumerate(pairs)]


def even_split(state: dict[str, Any]) -> bool:
    """Whether the state's blocks are the even split (states saved without ``block_split`` use
    the older layout with a short last block)."""
    return state.get("block_split") == "even"


def _zeros(n: int, dtype: torch.dtype, device: Any) -> torch.Tensor:
    return torch.zeros(n, n, dtype=dtype, device=device)
