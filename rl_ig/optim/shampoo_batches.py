"""Shampoo's block arithmetic, done for the same-shaped blocks of a parameter together.

A parameter split into ``k`` blocks of shape ``(r, c)`` takes, per step, one ``baddbmm`` per
factor, two ``bmm`` for the preconditioned direction and one pair of batched norms for the
grafting, instead of ``k`` of each: on small blocks the per-call overhead, not the arithmetic,
would otherwise set the step time. The factors and roots of a batch are stacked tensors
``(k, r, r)`` and ``(k, c, c)``; the state's per-block lists (``state["L"][i]`` and so on, see
:mod:`rl_ig.optim.shampoo_blocks`) hold views of their slices, so ``state_dict`` and the
distributed exchange see one tensor per block as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from rl_ig.optim.shampoo_blocks import FACTOR_KEYS, ShampooBlock, graft_scale, inverse_root

_KEYS = ("L", "R", "L_root", "R_root")


class BlockBatch:
    """The blocks of one parameter that share a shape ``(r, c)``, with stacked state.

    Args:
        state: the parameter's optimizer state (factors of every block in ``blocks`` present).
        blocks: same-shaped blocks of that parameter, in index order.
        shape: the parameter's matrix view ``(m, n)``.
    """

    def __init__(
        self, state: dict[str, Any], blocks: Sequence[ShampooBlock], shape: tuple[int, int]
    ) -> None:
        self.state, self.blocks = state, list(blocks)
        self._index = [b.index for b in self.blocks]
        self._grid = _grid(self.blocks, shape)
        self.stacks: dict[str, torch.Tensor | None] = {}
        for key in _KEYS:
            entries = [state[key][i] for i in self._index]
            stack = None if any(e is None for e in entries) else torch.stack(entries)
            self._bind(key, stack)
        self._lists = tuple(state[key] for key in _KEYS)

    def is_current(self) -> bool:
        """Whether the state still holds this batch's views (not replaced, e.g. by loading)."""
        return all(self.state[key] is lst for key, lst in zip(_KEYS, self._lists))

    @property
    def has_roots(self) -> bool:
        return self.stacks["L_root"] is not None and self.stacks["R_root"] is not None

    def gather(self, matrix: torch.Tensor) -> torch.Tensor:
        """The batch's blocks of an ``(m, n)`` matrix as a contiguous ``(k, r, c)`` stack."""
        if self._grid is not None:
            kr, r, kc, c = self._grid
            return matrix.reshape(kr, r, kc, c).transpose(1, 2).reshape(kr * kc, r, c)
        return torch.stack([matrix[b.rows, b.cols] for b in self.blocks])

    def scatter(self, stack: torch.Tensor, out: torch.Tensor) -> None:
        """Write a ``(k, r, c)`` stack into the batch's blocks of ``out: (m, n)``."""
        if self._grid is not None:
            kr, r, kc, c = self._grid
            out.view(kr, r, kc, c).copy_(stack.view(kr, kc, r, c).transpose(1, 2))
            return
        for block, value in zip(self.blocks, stack):
            out[block.rows, block.cols] = value

    def update_factors(self, grads: torch.Tensor, beta2: float) -> None:
        """``L ← β₂L + (1 − β₂)G_bG_bᵀ``, ``R ← β₂R + (1 − β₂)G_bᵀG_b``; a plain sum if β₂ = 1.

        Args:
            grads: the blocks' gradients ``(k, r, c)`` (:meth:`gather`), in the factors' dtype.
            beta2: factor decay in (0, 1].
        """
        alpha = 1.0 - beta2 if beta2 < 1.0 else 1.0
        left, right = self._stack("L"), self._stack("R")
        left.baddbmm_(grads, grads.transpose(1, 2), beta=beta2, alpha=alpha)
        right.baddbmm_(grads.transpose(1, 2), grads, beta=beta2, alpha=alpha)

    def refresh_roots(self, epsilon: float, correction: float, info: dict[str, float]) -> None:
        """Recompute ``(X / correction + εI)^(-1/4)`` for ``X = L, R`` of every block.

        A factor whose root cannot be computed keeps its previous root (the identity if it has
        none); ``info["eigh_retries"]`` and ``info["eigh_fallbacks"]`` count what happened.
        """
        for key in FACTOR_KEYS:
            factors = self._stack(key)
            if correction != 1.0:
                factors = factors / correction
            roots, ok, retries = batched_inverse_root(factors, epsilon)
            info["eigh_retries"] += retries
            info["eigh_fallbacks"] += float(len(ok) - sum(ok))
            previous = self.stacks[key + "_root"]
            if previous is None:
                eye = torch.eye(factors.shape[-1], dtype=factors.dtype, device=factors.device)
                previous = eye.expand_as(factors)
            keep = torch.tensor(ok, device=factors.device).view(-1, 1, 1)
            self._bind(key + "_root", torch.where(keep, roots, previous))
        info["root_updates"] += float(len(self.blocks))

    def directions(self, search: torch.Tensor, graft: torch.Tensor | None) -> torch.Tensor:
        """``L_root M_b R_root`` of every block, each rescaled to the norm of ``graft_b``.

        Args:
            search: the search direction's blocks ``(k, r, c)``, in the factors' dtype.
            graft: the grafting method's direction's blocks ``(k, r, c)``, or None.

        Returns:
            The blocks' directions ``(k, r, c)``.
        """
        out = torch.bmm(torch.bmm(self._stack("L_root"), search), self._stack("R_root"))
        if graft is not None:
            out.mul_(graft_scale(graft, out))
        return out

    def _stack(self, key: str) -> torch.Tensor:
        stack = self.stacks[key]
        assert stack is not None, f"no {key} for this batch yet"
        return stack

    def _bind(self, key: str, stack: torch.Tensor | None) -> None:
        """Make ``stack`` the batch's ``key`` and its slices the state's per-block entries."""
        self.stacks[key] = stack
        if stack is None:
            return
        entries = self.state[key]
        for j, i in enumerate(self._index):
            entries[i] = stack[j]


def make_batches(
    state: dict[str, Any], blocks: Sequence[ShampooBlock], shape: tuple[int, int]
) -> list[BlockBatch]:
    """``blocks`` (of one parameter) grouped by shape, one :class:`BlockBatch` per shape."""
    by_shape: dict[tuple[int, int], list[ShampooBlock]] = {}
    for block in blocks:
        by_shape.setdefault(block.shape, []).append(block)
    return [BlockBatch(state, group, shape) for group in by_shape.values()]


def batched_inverse_root(
    factors: torch.Tensor, epsilon: float
) -> tuple[torch.Tensor, list[bool], float]:
    """``(X_b + εI)^(-1/4)`` of a stack of symmetric PSD factors ``(k, n, n)``.

    One batched ``eigh`` in the factors' dtype; if it fails or gives non-finite values, each
    factor goes through :func:`rl_ig.optim.shampoo_blocks.inverse_root` on its own (with its
    float64 retry).

    Returns:
        ``(roots, ok, retries)``: ``roots: (k, n, n)`` (entries where ``ok`` is False are
        undefined), per factor whether its root is usable, and the number of float64 retries.
    """
    try:
        # Looked up at call time so a test can make it fail.
        d, q = torch.linalg.eigh(factors)
    except RuntimeError:
        return _one_by_one(factors, epsilon)
    if not bool(torch.isfinite(d).all()) or not bool(torch.isfinite(q).all()):
        return _one_by_one(factors, epsilon)
    scale = (d.clamp_min(0.0) + epsilon).pow(-0.25)
    roots = torch.bmm(q * scale.unsqueeze(1), q.transpose(1, 2))
    ok = torch.isfinite(roots).flatten(1).all(dim=1).tolist()
    return roots, [bool(v) for v in ok], 0.0


def _one_by_one(factors: torch.Tensor, epsilon: float) -> tuple[torch.Tensor, list[bool], float]:
    roots = torch.empty_like(factors)
    ok, retries = [], 0.0
    for j, factor in enumerate(factors):
        root, retried = inverse_root(factor, 4, epsilon)
        retries += retried
        ok.append(root is not None)
        if root is not None:
            roots[j] = root
    return roots, ok, retries


def _grid(blocks: Sequence[ShampooBlock], shape: tuple[int, int]) -> tuple[int, ...] | None:
    """``(kr, r, kc, c)`` when ``blocks`` tile the whole ``(m, n)`` matrix as a regular grid in
    row-major order (then gathering and scattering are single strided copies), else None."""
    r, c = blocks[0].shape
    m, n = shape
    if m % r or n % c or len(blocks) != (m // r) * (n // c):
        return None
    kc = n // c
    for j, block in enumerate(blocks):
        if block.rows.start != (j // kc) * r or block.cols.start != (j % kc) * c:
            return None
    return m // r, r, kc, c
