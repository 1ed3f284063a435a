"""K-FAC's factor statistics and eigendecompositions, in one process or across the ranks of a
data-parallel job (Osawa et al. 2019; Pauloski et al. 2020).

With one rank both functions reduce to the single-process computation. With several:

* Factors: at each factor update, the batch statistics ``A_batch``, ``G_batch`` of every rank
  are averaged with a bucketed all-reduce before the running average, so every rank folds the
  same statistics into the same factors. With the loss a mean over each rank's batch of ``n``
  examples, ``A_r`` is a mean over rows and ``G_r = (1/n) Σ_i g_i g_iᵀ`` (see
  :mod:`rl_ig.optim.kfac_layers`), so with equal local batches the mean over ranks is exactly
  the ``A`` and ``G`` of the global batch of ``n·world_size`` examples.
* Eigendecompositions (and, with factored damping, the Cholesky inverses): the factors due for
  one are assigned to ranks by cost ``n³`` (:func:`rl_ig.distributed.assign_work`); each rank
  computes its own and the results are broadcast from their owners, so every rank ends with the
  same eigenbases and inverses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import torch

from rl_ig.distributed import all_reduce_bucketed, assign_work, broadcast_from_owners, world
from rl_ig.optim.kfac_layers import KFACLayer
from rl_ig.optim.kronecker import damped_inverse, robust_eigh

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup

Pending = dict[int, tuple[torch.Tensor, torch.Tensor]]


class Decomposition(Protocol):
    """One matrix computation of a curvature refresh, which any one rank can run for all."""

    @property
    def size(self) -> int:
        """The matrix's side ``n`` (its cost is taken to be ``n³``)."""
        ...

    def compute(self) -> tuple[list[torch.Tensor] | None, int]:
        """``(results, retries)``; results None when the computation failed."""
        ...

    def buffers(self) -> list[torch.Tensor]:
        """Empty tensors of the results' shapes, dtype and device (to receive them into)."""
        ...

    def store(self, results: list[torch.Tensor]) -> None:
        """Keep the results (called on every rank, with the owner's results)."""
        ...


@dataclass
class EighTask:
    """One factor (``state[key]``, key ``"A"`` or ``"G"``) due for an eigendecomposition, stored
    as ``state["Q" + key]``, ``state["d" + key]``."""

    state: dict[str, Any]
    key: str
    damping: float

    @property
    def size(self) -> int:
        return int(self.state[self.key].shape[0])

    def compute(self) -> tuple[list[torch.Tensor] | None, int]:
        eigen, retries = robust_eigh(self.state[self.key], self.damping)
        return (None if eigen is None else [eigen.Q, eigen.d]), retries

    def buffers(self) -> list[torch.Tensor]:
        factor = self.state[self.key]
        return [torch.empty_like(factor), factor.new_empty(factor.shape[0])]

    def store(self, results: list[torch.Tensor]) -> None:
        self.state["Q" + self.key], self.state["d" + self.key] = results


@dataclass
class InverseTask:
    """``(matrix + shift·I)⁻¹`` (:func:`damped_inverse`), stored as ``out[key]``."""

    matrix: torch.Tensor
    shift: float
    damping: float
    out: dict[str, torch.Tensor]
    key: str

    @property
    def size(self) -> int:
        return int(self.matrix.shape[0])

    def compute(self) -> tuple[list[torch.Tensor] | None, int]:
        inverse, retries = damped_inverse(self.matrix, self.shift, self.damping)
        return (None if inverse is None else [inverse]), retries

    def buffers(self) -> list[torch.Tensor]:
        return [torch.empty_like(self.matrix)]

    def store(self, results: list[torch.Tensor]) -> None:
        self.out[self.key] = results[0]


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


def decompose(tasks: Sequence[Decomposition], group: ProcessGroup | None) -> tuple[int, int]:
    """Run the tasks (spread over the ranks, each on one) and store their results everywhere.

    A task that fails stores nothing, so what it would have replaced stays as it was.

    Returns:
        ``(retries, fallbacks)`` summed over the tasks (of all ranks).
    """
    if world(group)[1] > 1:
        return spread(tasks, group)
    retries = fallbacks = 0
    for task in tasks:
        results, tries = task.compute()
        retries += tries
        if results is None:
            fallbacks += 1
        else:
            task.store(results)
    return retries, fallbacks


def spread(tasks: Sequence[Decomposition], group: ProcessGroup | None) -> tuple[int, int]:
    """Run each task on one rank (assigned by cost ``n³``) and broadcast the results (collective).

    Returns:
        ``(retries, fallbacks)`` summed over all tasks, the same on every rank.
    """
    rank, size = world(group)
    owners = assign_work([float(t.size) ** 3 for t in tasks], size)
    payloads = [_payload(task, mine=owner == rank) for task, owner in zip(tasks, owners)]
    broadcast_from_owners(
        [t for payload in payloads for t in payload],
        [owner for owner, payload in zip(owners, payloads) for _ in payload],
        group=group,
    )
    headers = torch.stack([p[0].to(payloads[0][0]) for p in payloads]).tolist() if payloads else []
    fallbacks = 0
    for task, payload, (ok, _) in zip(tasks, payloads, headers):
        if ok > 0:
            task.store(payload[1:])
        else:
            fallbacks += 1
    return int(sum(retries for _, retries in headers)), fallbacks


def _payload(task: Decomposition, mine: bool) -> list[torch.Tensor]:
    """``[header = [ok, retries], *results]``, computed if ``mine``, else buffers to receive.

    The owner keeps contiguous copies, the layout the other ranks receive, so that later
    products run the same kernels, and give the same bits, on every rank.
    """
    buffers = task.buffers()
    like: dict[str, Any] = {"dtype": buffers[0].dtype, "device": buffers[0].device}
    if not mine:
        return [torch.empty(2, **like), *buffers]
    results, retries = task.compute()
    header = torch.tensor([float(results is not None), float(retries)], **like)
    if results is None:
        return [header, *(torch.zeros_like(b) for b in buffers)]
    return [header, *(r.contiguous() for r in results)]
