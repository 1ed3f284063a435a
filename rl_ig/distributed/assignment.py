"""Work assignment across ranks: greedy longest-processing-time (Graham 1969).

Every rank computes the same assignment from the same costs, so no communication is needed to
agree on who computes what.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence


def assign_work(costs: Sequence[float], world_size: int) -> list[int]:
    """The owner rank of each work item: largest cost first, to the least-loaded rank.

    Ties go to the lower item index and the lower rank, so the result is deterministic. The
    makespan is at most ``4/3 − 1/(3·world_size)`` times the optimum.

    Args:
        costs: one finite cost >= 0 per item (e.g. ``n³`` for an ``(n, n)`` eigendecomposition).
        world_size: number of ranks, >= 1.

    Returns:
        ``owners``: ``owners[i]`` in ``[0, world_size)`` computes item ``i``.

    Raises:
        ValueError: for a world size < 1 or a negative or non-finite cost.
    """
    if not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"assign_work: world_size must be an integer >= 1, got {world_size!r}")
    bad = [c for c in costs if not (math.isfinite(c) and c >= 0)]
    if bad:
        raise ValueError(f"assign_work: costs must be finite numbers >= 0, got {bad[0]!r}")
    loads = [(0.0, rank) for rank in range(world_size)]
    owners = [0] * len(costs)
    for i in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        load, rank = heapq.heappop(loads)
        owners[i] = rank
        heapq.heappush(loads, (load + float(costs[i]), rank))
    return owners
