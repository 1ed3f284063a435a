"""Collectives on lists of tensors over a ``torch.distributed`` process group.

Every function here is a no-op (or the identity) in one process: when ``torch.distributed`` is
not available or not initialised, or the group has one rank. Otherwise it is a collective:
every rank of the group must call it, in the same order, with tensors of the same shapes and
dtypes. ``group=None`` means the default group.

Collectives run on the device the backend serves (:func:`comm_device`): the tensors' own CUDA
device with NCCL, the CPU with gloo (CUDA tensors are staged through the CPU).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist

from rl_ig.distributed.buckets import (
    DEFAULT_BUCKET_BYTES,
    bucket_indices,
    empty_like_flat,
    flatten,
    unflatten_into,
)

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup


def world(group: ProcessGroup | None = None) -> tuple[int, int]:
    """``(rank, world_size)`` of this process in ``group``; ``(0, 1)`` without distributed.

    Raises:
        ValueError: if ``group`` is given while ``torch.distributed`` is not initialised, or
            this process is not a member of ``group``.
    """
    if not dist.is_available() or not dist.is_initialized():
        if group is not None:
            raise ValueError(
                "process_group was given but torch.distributed is not initialised; call "
                "torch.distributed.init_process_group first (torchrun) or pass None"
            )
        return 0, 1
    rank = dist.get_rank(group)
    if rank < 0:
        raise ValueError(
            "this process is not a member of process_group; pass a group that contains every "
            "rank running the optimizer, or None for the default group"
        )
    return rank, dist.get_world_size(group)


def comm_device(device: torch.device, backend: str) -> torch.device:
    """The device on which ``backend`` runs collectives for tensors living on ``device``.

    NCCL: the tensors' CUDA device. gloo: the CPU (CUDA tensors are copied there and back).
    A combined backend such as ``"cpu:gloo,cuda:nccl"`` takes the member for ``device``.

    Raises:
        ValueError: for CPU tensors with NCCL alone, or a backend other than gloo and NCCL.
    """
    name = str(backend).lower()
    if device.type == "cuda" and "nccl" in name:
        return device
    if "gloo" in name:
        return torch.device("cpu")
    if "nccl" in name:
        raise ValueError(
            f"the NCCL backend needs CUDA tensors, got {device.type} ones; move the model to "
            "its GPU (model.to(f'cuda:{local_rank}')) or use backend='gloo' for CPU training"
        )
    raise ValueError(
        f"unsupported torch.distributed backend {backend!r}; initialise the process group with "
        "backend='gloo' (CPU) or backend='nccl' (CUDA)"
    )


def group_device(device: torch.device, group: ProcessGroup | None = None) -> torch.device:
    """:func:`comm_device` for the backend of ``group`` (which must be initialised)."""
    return comm_device(device, str(dist.get_backend(group)))


def check_backend(device: torch.device, group: ProcessGroup | None = None) -> None:
    """Raise the :func:`comm_device` error early if ``group`` cannot serve ``device``."""
    if world(group)[1] > 1:
        group_device(device, group)


def _global_rank(group: ProcessGroup | None, rank: int) -> int:
    return rank if group is None else dist.get_global_rank(group, rank)


def all_reduce_bucketed(
    tensors: Sequence[torch.Tensor],
    *,
    average: bool = False,
    group: ProcessGroup | None = None,
    bucket_bytes: int = DEFAULT_BUCKET_BYTES,
) -> None:
    """Sum (or average) ``tensors`` over the ranks, in place, one collective per bucket.

    The average is the sum divided by the world size (gloo has no ``ReduceOp.AVG``), so floating
    tensors only. Buckets hold one dtype each and at most ``bucket_bytes``.
    """
    _, size = world(group)
    if size == 1 or not tensors:
        return
    device = group_device(tensors[0].device, group)
    for bucket in bucket_indices(tensors, bucket_bytes):
        members = [tensors[i] for i in bucket]
        flat = flatten(members, device)
        dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=group)
        if average:
            flat.div_(size)
        unflatten_into(flat, members)


def all_reduce_mean_bucketed(
    tensors: Sequence[torch.Tensor],
    *,
    group: ProcessGroup | None = None,
    bucket_bytes: int = DEFAULT_BUCKET_BYTES,
) -> None:
    """Average floating ``tensors`` over the ranks, in place (see :func:`all_reduce_bucketed`)."""
    all_reduce_bucketed(tensors, average=True, group=group, bucket_bytes=bucket_bytes)


def all_reduce_scalars(
    values: Sequence[float],
    device: torch.device,
    *,
    average: bool = True,
    group: ProcessGroup | None = None,
) -> list[float]:
    """The sums (or means) over the ranks of a few Python floats, in float64, one collective."""
    if world(group)[1] == 1:
        return [float(v) for v in values]
    buffer = torch.tensor(list(values), dtype=torch.float64, device=device)
    all_reduce_bucketed([buffer], average=average, group=group)
    return [float(v) for v in buffer.tolist()]


def broadcast_from_owners(
    tensors: Sequence[torch.Tensor],
    owners: Sequence[int],
    *,
    group: ProcessGroup | None = None,
    bucket_bytes: int = DEFAULT_BUCKET_BYTES,
) -> None:
    """Overwrite every tensor with its owner's value, in place.

    Owners go in increasing rank order; the tensors of one owner are packed into buckets, one
    broadcast per bucket. On non-owners the tensors only need the right shape and dtype.

    Args:
        tensors: the same shapes and dtypes on every rank.
        owners: ``owners[i]`` is the rank (in ``group``) whose ``tensors[i]`` everyone receives.

    Raises:
        ValueError: for a length mismatch or an owner outside ``[0, world_size)``.
    """
    rank, size = world(group)
    if len(owners) != len(tensors):
        raise ValueError(
            f"broadcast_from_owners: {len(tensors)} tensors but {len(owners)} owners; pass one "
            "owner per tensor"
        )
    outside = [o for o in owners if not 0 <= o < size]
    if outside:
        raise ValueError(
            f"broadcast_from_owners: owner rank {outside[0]} is outside the process group of "
            f"size {size}; assign the work with this group's world size"
        )
    if size == 1 or not tensors:
        return
    device = group_device(tensors[0].device, group)
    for owner in sorted(set(owners)):
        members = [t for t, o in zip(tensors, owners) if o == owner]
        for bucket in bucket_indices(members, bucket_bytes):
            part = [members[i] for i in bucket]
            flat = flatten(part, device) if rank == owner else empty_like_flat(part, device)
            dist.broadcast(flat, src=_global_rank(group, owner), group=group)
            if rank != owner:
                unflatten_into(flat, part)


def all_gather_flat(
    tensor: torch.Tensor,
    sizes: Sequence[int] | None = None,
    *,
    group: ProcessGroup | None = None,
) -> list[torch.Tensor]:
    """Every rank's 1-D ``tensor``, whose lengths may differ: ``[t_0, t_1, …]``.

    The tensors are padded to the longest, all-gathered in one collective and unpadded.

    Args:
        tensor: ``(n_rank,)``, the same dtype on every rank.
        sizes: ``n_r`` of every rank when all ranks know them; None gathers them first (one more
            collective).

    Returns:
        ``world_size`` tensors ``(n_r,)`` on ``tensor.device``.

    Raises:
        ValueError: for a tensor that is not 1-D, or ``sizes`` that do not have one entry per
            rank or disagree with this rank's tensor.
    """
    rank, size = world(group)
    if tensor.dim() != 1:
        raise ValueError(f"all_gather_flat: tensor must be 1-D, got shape {tuple(tensor.shape)}")
    if size == 1:
        return [tensor]
    device = group_device(tensor.device, group)
    if sizes is None:
        sizes = _gather_sizes(tensor.numel(), device, group, size)
    if len(sizes) != size:
        raise ValueError(
            f"all_gather_flat: {len(sizes)} sizes for a process group of size {size}; pass one "
            "size per rank"
        )
    if sizes[rank] != tensor.numel():
        raise ValueError(
            f"all_gather_flat: sizes[{rank}] = {sizes[rank]} but this rank's tensor has "
            f"{tensor.numel()} values"
        )
    longest = max(sizes)
    if longest == 0:
        return [tensor.new_empty(0) for _ in range(size)]
    padded = torch.zeros(longest, dtype=tensor.dtype, device=device)
    padded[: tensor.numel()] = tensor.to(device)
    out = [torch.empty_like(padded) for _ in range(size)]
    dist.all_gather(out, padded, group=group)
    return [o[:n].to(tensor.device) for o, n in zip(out, sizes)]


def _gather_sizes(n: int, device: torch.device, group: ProcessGroup | None, size: int) -> list[int]:
    mine = torch.tensor([n], dtype=torch.int64, device=device)
    out = [torch.empty_like(mine) for _ in range(size)]
    dist.all_gather(out, mine, group=group)
    return [int(t.item()) for t in out]
