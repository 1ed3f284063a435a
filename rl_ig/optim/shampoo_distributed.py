"""Shampoo across the ranks of a data-parallel job: the ZeRO-1 scheme of Distributed Shampoo
(Shi et al. 2023, §4).

Every rank sees the same DDP-averaged gradient. The preconditioner blocks of all matrix
parameters are assigned to ranks by cost (``r³ + c³`` for a block ``(r, c)``, greedy, the same
on every rank); a rank keeps the factors and roots of its own blocks only and computes only
their (grafted) directions. The directions are then all-gathered in one flat buffer per dtype,
so that every rank applies the full update. Elementwise state (momentum, grafting statistics,
step counts) and 1-D parameters are computed by every rank.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from rl_ig.distributed import all_gather_flat, assign_work, broadcast_from_owners
from rl_ig.optim.shampoo_blocks import ShampooBlock, block_pairs

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup

ROOT_KEYS = ("eigh_retries", "eigh_fallbacks", "root_updates")  # counted by block owners
_BLOCK_KEYS = ("L", "R", "L_root", "R_root")
PlanEntry = tuple[torch.Tensor, tuple[int, int], int, bool]
"""``(param, (m, n) matrix view, block dim, even split)``: what fixes a parameter's blocks."""


@dataclass(frozen=True)
class BlockOwners:
    """Which rank owns each preconditioner block: ``owners[id(param)][block index]``."""

    rank: int
    size: int
    key: tuple[Any, ...]
    owners: dict[int, tuple[int, ...]]

    def of(self, p: torch.Tensor) -> tuple[int, ...]:
        return self.owners[id(p)]

    def mine(self, p: torch.Tensor) -> list[bool]:
        return [owner == self.rank for owner in self.owners[id(p)]]


def plan_blocks(entries: Sequence[PlanEntry], rank: int, size: int) -> BlockOwners:
    """Assign every block of the matrix parameters to a rank.

    Args:
        entries: ``(param, (m, n) matrix view, block dim, even split)`` of every matrix
            parameter, in the same order on every rank.
        rank: this rank; size: the world size.
    """
    pairs = [block_pairs(shape, dim, even) for _, shape, dim, even in entries]
    key = plan_key(entries, rank, size)
    costs = [
        float(r.stop - r.start) ** 3 + float(c.stop - c.start) ** 3
        for blocks in pairs
        for r, c in blocks
    ]
    flat = assign_work(costs, size)
    owners, start = {}, 0
    for (p, *_), blocks in zip(entries, pairs):
        owners[id(p)] = tuple(flat[start : start + len(blocks)])
        start += len(blocks)
    return BlockOwners(rank, size, key, owners)


def plan_key(entries: Sequence[PlanEntry], rank: int, size: int) -> tuple[Any, ...]:
    """What :func:`plan_blocks` depends on: a cached plan is reused while this is unchanged."""
    return (rank, size, tuple((id(p), *rest) for p, *rest in entries))


@dataclass
class SharedDirection:
    """A parameter's direction ``(m, n)``: this rank's blocks filled, the others to receive."""

    matrix: torch.Tensor
    blocks: list[ShampooBlock]
    owners: tuple[int, ...]


def exchange_directions(
    shared: Sequence[SharedDirection],
    counts: list[float],
    rank: int,
    size: int,
    group: ProcessGroup | None,
) -> list[float]:
    """Fill every block of ``shared`` from its owner: one all-gather per dtype (a collective).

    Each rank sends its blocks' directions, flattened in ``shared`` order, with its ``counts``
    appended to the first dtype's buffer; every rank knows every rank's payload size.

    Returns:
        ``counts`` summed over the ranks (``[0.0]*len(counts)`` if nothing is shared).
    """
    totals = [0.0] * len(counts)
    by_dtype: dict[torch.dtype, list[SharedDirection]] = {}
    for item in shared:
        by_dtype.setdefault(item.matrix.dtype, []).append(item)
    for first, items in enumerate(by_dtype.values()):
        extra = counts if first == 0 else []
        sizes = [_payload_size(items, r) + len(extra) for r in range(size)]
        mine = [item.matrix[b.rows, b.cols].reshape(-1) for item, b in _owned(items, rank)]
        mine.append(torch.tensor(extra, dtype=items[0].matrix.dtype, device=items[0].matrix.device))
        gathered = all_gather_flat(torch.cat(mine), sizes, group=group)
        for r, flat in enumerate(gathered):
            if r != rank:
                _scatter(flat, _owned(items, r))
            for i, value in enumerate(flat[len(flat) - len(extra) :].tolist()):
                totals[i] += value
    return totals


def _owned(
    items: Sequence[SharedDirection], rank: int
) -> list[tuple[SharedDirection, ShampooBlock]]:
    return [
        (item, block)
        for item in items
        for block, owner in zip(item.blocks, item.owners)
        if owner == rank
    ]


def _payload_size(items: Sequence[SharedDirection], rank: int) -> int:
    return sum(
        (b.rows.stop - b.rows.start) * (b.cols.stop - b.cols.start) for _, b in _owned(items, rank)
    )


def _scatter(flat: torch.Tensor, owned: list[tuple[SharedDirection, ShampooBlock]]) -> None:
    offset = 0
    for item, b in owned:
        shape = (b.rows.stop - b.rows.start, b.cols.stop - b.cols.start)
        item.matrix[b.rows, b.cols] = flat[offset : offset + shape[0] * shape[1]].view(shape)
        offset += shape[0] * shape[1]


@dataclass
class BlockState:
    """A matrix parameter's state, its blocks, their owners, and its factors' dtype and device."""

    state: dict[str, Any]
    blocks: list[ShampooBlock]
    owners: tuple[int, ...]
    dtype: torch.dtype
    device: torch.device


def gather_block_states(
    states: Sequence[BlockState], rank: int, group: ProcessGroup | None
) -> list[dict[str, list[torch.Tensor | None]]]:
    """The complete ``L``, ``R``, ``L_root``, ``R_root`` lists of each state (a collective).

    Every block's tensors are broadcast from its owner (roots that do not exist yet as zeros
    with a flag), so every rank returns the lists of a single-process run.

    Args:
        states: one per matrix parameter with state, in the same order on every rank.
    """
    layout = [
        [_block_payload(item, b, owner == rank) for b, owner in zip(item.blocks, item.owners)]
        for item in states
    ]
    tensors = [t for per_block in layout for payload in per_block for t in payload]
    owners = [
        owner
        for item, per_block in zip(states, layout)
        for owner, payload in zip(item.owners, per_block)
        for _ in payload
    ]
    broadcast_from_owners(tensors, owners, group=group)
    return [_full_lists(per_block) for per_block in layout]


def _block_payload(item: BlockState, block: ShampooBlock, mine: bool) -> list[torch.Tensor]:
    """``[flags (has L_root, has R_root), L, R, L_root, R_root]`` of one block."""
    r, c = block.rows.stop - block.rows.start, block.cols.stop - block.cols.start
    like: dict[str, Any] = {"dtype": item.dtype, "device": item.device}
    if not mine:
        return [torch.empty(2, **like)] + [torch.empty(n, n, **like) for n in (r, c, r, c)]
    values = [item.state[key][block.index] for key in _BLOCK_KEYS]
    values = [v if v is None else v.to(item.dtype) for v in values]
    flags = torch.tensor([float(values[2] is not None), float(values[3] is not None)], **like)
    roots = [v if v is not None else torch.zeros(n, n, **like) for v, n in zip(values[2:], (r, c))]
    return [flags, values[0], values[1], *roots]


def _full_lists(per_block: list[list[torch.Tensor]]) -> dict[str, list[torch.Tensor | None]]:
    flags = torch.stack([p[0].to(per_block[0][0]) for p in per_block]).tolist()
    return {
        "L": [p[1] for p in per_block],
        "R": [p[2] for p in per_block],
        "L_root": [p[3] if f[0] > 0 else None for p, f in zip(per_block, flags)],
        "R_root": [p[4] if f[1] > 0 else None for p, f in zip(per_block, flags)],
    }


def release_foreign_blocks(state: dict[str, Any], mine: Sequence[bool]) -> None:
    """Drop the tensors of the blocks this rank does not own (ZeRO-1 memory)."""
    for key in _BLOCK_KEYS:
        state[key] = [v if own else None for v, own in zip(state[key], mine)]
