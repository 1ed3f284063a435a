"""K-FAC's factor statistics and eigendecompositions, in one process or across the ranks of a
data-parallel job (Osawa et al. 2019; Pauloski et al. 2020).

With one rank both functions reduce to the single-process computation. With several:

* Factors: at each factor update, the batch statistics ``A_batch``, ``G_batch`` of every rank
  are averaged with a bucketed all-reduce before the running average, so every rank folds the
  same statistics into the same factors. With the loss a mean over each rank's batch of ``n``
  examples, ``A_r`` is a mean over rows and ``G_r = (1/n) Σ_i g_i g_iᵀ`` (see
  :mod:`rl_ig.optim.kfac_layers`), so with equal local batches the mean over ranks is exactly
  the ``A`` and ``G`` of the global batch of ``n·world_size`` examples.
* Eigendecompositions: the factors due for one are assigned to ranks by cost ``n³``
  (:func:`rl_ig.distributed.assign_work`); each rank decomposes its own and the results are
  broadcast from their owners, so every rank ends with the same eigenbases.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from rl_ig.distributed import all_reduce_bucketed, assign_work, broadcast_from_owners, world
from rl_ig.optim.kfac_layers import KFACLayer
from rl_ig.optim.kronecker import robust_eigh

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup

Pending = dict[int, tuple[torch.Tensor, torch.Tensor]]


@dataclass
class EighTask:
    """One factor (``state[key]``, key ``"A"`` or ``"G"``) due for an eigendecomposition."""

    state: dict[str, Any]
    key: str
    damping: float

    @property
    def factor(self) -> torch.Tensor:
        return self.state[self.key]


def shared_batch_factors(
    layers: Sequence[KFACLayer], pending: Pending, due: bool, group: ProcessGroup | None
) -> Pending:
    """The batch statistics to fold into the factors: this process's, or the ranks' average.

    With several ranks the average is a collective run at every step with ``due`` factors
    (statistics are only recorded then), and nothing is folded at other steps.
    """
    if world(group)[1] == 1:
        return pending
    return average_batch_factors(layers, pending, group) if due else {}


def average_batch_factors(
    layers: Sequence[KFACLayer], pending: Pending, group: ProcessGroup | None
) -> Pending:
    """The batch statistics averaged over the ranks that recorded them (a collective).

    Each layer sends ``(A, G, 1)`` if this rank recorded it and zeros otherwise, all in one
    bucketed sum; a layer recorded by ``k`` ranks gets ``ΣA/k``, ``ΣG/k``, one recorded by no
    rank is left out. A non-finite statistic on any rank makes the sum non-finite on all of
    them, so the running average skips it everywhere alike.

    Args:
        layers: the K-FAC layers, in the same order on every rank.
        pending: ``{layer index: (A_batch, G_batch)}`` recorded by this rank.
    """
    payload: list[list[torch.Tensor]] = []
    for index, layer in enumerate(layers):
        like: dict[str, Any] = {"dtype": layer.factor_dtype, "device": layer.weight.device}
        if index in pending:
            a, g = pending[index]
            payload.append([a, g, torch.ones(1, **like)])
        else:
            a_dim, g_dim = layer.factor_dims
            zeros = [torch.zeros(a_dim, a_dim, **like), torch.zeros(g_dim, g_dim, **like)]
            payload.append([*zeros, torch.zeros(1, **like)])
    all_reduce_bucketed([t for item in payload for t in item], group=group)
    counts = torch.cat([item[2].to(payload[0][2]) for item in payload]).tolist()
    return {
        index: (a / count, g / count)
        for index, ((a, g, _), count) in enumerate(zip(payload, counts))
        if count > 0
    }


def decompose(tasks: Sequence[EighTask], group: ProcessGroup | None) -> tuple[int, int]:
    """Eigendecompose the tasks' factors with :func:`robust_eigh` (spread over the ranks).

    On success ``state["Q" + key]``, ``state["d" + key]`` are set; on failure they are left as
    they were (the previous eigenbasis, if any).

    Returns:
        ``(retries, fallbacks)`` summed over the tasks (of all ranks).
    """
    if world(group)[1] > 1:
        return spread_eigh(tasks, group)
    retries = fallbacks = 0
    for task in tasks:
        eigen, tries = robust_eigh(task.factor, task.damping)
        retries += tries
        if eigen is None:
            fallbacks += 1
            continue
        task.state["Q" + task.key], task.state["d" + task.key] = eigen.Q, eigen.d
    return retries, fallbacks


def spread_eigh(tasks: Sequence[EighTask], group: ProcessGroup | None) -> tuple[int, int]:
    """Eigendecompose the tasks' factors, each on one rank, and share the results (collective).

    On success ``state["Q" + key]``, ``state["d" + key]`` are set on every rank; on failure they
    are left as they were, which is the same on every rank.

    Returns:
        ``(retries, fallbacks)`` summed over all tasks, the same on every rank.
    """
    rank, size = world(group)
    owners = assign_work([float(t.factor.shape[0]) ** 3 for t in tasks], size)
    results = [_eigh_payload(task, mine=owner == rank) for task, owner in zip(tasks, owners)]
    broadcast_from_owners(
        [t for result in results for t in result],
        [owner for owner, result in zip(owners, results) for _ in result],
        group=group,
    )
    headers = torch.stack([r[0].to(results[0][0]) for r in results]).tolist() if results else []
    fallbacks = 0
    for task, (_, q, d), (ok, _) in zip(tasks, results, headers):
        if ok > 0:
            task.state["Q" + task.key], task.state["d" + task.key] = q, d
        else:
            fallbacks += 1
    return int(sum(retries for _, retries in headers)), fallbacks


def _eigh_payload(task: EighTask, mine: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(header = [ok, retries], Q: (n, n), d: (n,))``, computed if ``mine``, else to receive.

    The owner keeps contiguous copies, the layout the other ranks receive, so that later
    products run the same kernels, and give the same bits, on every rank.
    """
    factor = task.factor
    n = factor.shape[0]
    like: dict[str, Any] = {"dtype": factor.dtype, "device": factor.device}
    if not mine:
        return torch.empty(2, **like), torch.empty(n, n, **like), torch.empty(n, **like)
    eigen, retries = robust_eigh(factor, task.damping)
    header = torch.tensor([float(eigen is not None), float(retries)], **like)
    if eigen is None:
        return header, torch.zeros(n, n, **like), torch.zeros(n, **like)
    return header, eigen.Q.contiguous(), eigen.d.contiguous()
