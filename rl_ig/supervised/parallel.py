"""Data parallelism under ``torchrun``: which process this is, its slice of each batch, and the
few collectives the training loop needs.

Launched by ``torchrun`` (the ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and ``MASTER_ADDR``
variables are set), a run initialises the default process group (``gloo`` on the CPU, ``nccl``
on CUDA) and wraps its model in ``DistributedDataParallel``; otherwise it is one plain process.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistContext:
    """This process's place in a data-parallel run (rank 0 of 1 for a plain process).

    Attributes:
        rank: global rank.
        world_size: number of processes.
        local_rank: rank on this machine (picks the GPU).
        launched: whether ``torchrun`` started the process (then a process group is used).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    launched: bool = False

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs, checkpoints and shows progress."""
        return self.rank == 0

    def local_batch_size(self, batch_size: int) -> int:
        """This rank's share of a global batch.

        Raises:
            ValueError: if ``batch_size`` is not a multiple of the world size.
        """
        if batch_size % self.world_size:
            raise ValueError(
                f"batch size {batch_size} is not divisible by the {self.world_size} processes; "
                f"pass a --batch-size that is a multiple of {self.world_size}"
            )
        return batch_size // self.world_size

    def shard(self, batch: Tensor) -> Tensor:
        """This rank's contiguous, disjoint ``1/world_size`` slice of a global batch."""
        size = self.local_batch_size(batch.shape[0])
        return batch[self.rank * size : (self.rank + 1) * size]

    def all_sum(self, values: Tensor) -> Tensor:
        """``values`` summed over the ranks (itself in a plain process)."""
        if self.launched:
            dist.all_reduce(values, op=dist.ReduceOp.SUM)
        return values


def context_from_env() -> DistContext:
    """The context the ``torchrun`` variables describe; a plain process without them.

    Raises:
        ValueError: for variables that are set but not valid ranks.
    """
    if not all(name in os.environ for name in ("RANK", "WORLD_SIZE")):
        return DistContext()
    try:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local = int(os.environ.get("LOCAL_RANK", rank))
    except ValueError:
        raise ValueError(
            "RANK, WORLD_SIZE and LOCAL_RANK must be integers; launch with torchrun"
        ) from None
    if not 0 <= rank < world:
        raise ValueError(f"RANK={rank} is not in [0, WORLD_SIZE={world}); launch with torchrun")
    return DistContext(rank=rank, world_size=world, local_rank=local, launched=True)


def resolve_device(name: str, ctx: DistContext) -> torch.device:
    """``cpu``, or ``cuda[:N]`` (``cuda:LOCAL_RANK`` for a bare ``cuda`` under torchrun).

    Raises:
        ValueError: for another device type or CUDA that is not available.
    """
    try:
        device = torch.device(name)
    except RuntimeError:
        device = torch.device("meta")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device must be cpu or cuda[:N], got {name!r}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name}: no CUDA device is available; pass --device cpu")
        if device.index is None:
            device = torch.device("cuda", ctx.local_rank if ctx.launched else 0)
    return device


def init_process_group(ctx: DistContext, device: torch.device) -> None:
    """Join the default process group (``nccl`` on CUDA, ``gloo`` otherwise) if launched."""
    if not ctx.launched or dist.is_initialized():
        return
    if not dist.is_available():
        raise ValueError("this torch build has no torch.distributed; run a single process")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")


def destroy_process_group(synchronize: bool = False) -> None:
    """Leave the default process group, if any; with ``synchronize``, after a barrier, so that
    no rank tears down its connections while another still uses them (gloo then aborts the
    slower rank). Error paths leave without it, since a failed rank never reaches a barrier."""
    if dist.is_available() and dist.is_initialized():
        if synchronize:
            dist.barrier()
        dist.destroy_process_group()


def wrap_model(model: nn.Module, ctx: DistContext, device: torch.device) -> nn.Module:
    """``DistributedDataParallel(model)`` when launched (gradients averaged over ranks during
    ``backward``), ``model`` itself otherwise."""
    if not ctx.launched:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


@torch.no_grad()
def max_param_difference(ctx: DistContext, params: Iterable[Tensor]) -> float:
    """``max |θ_rank − θ_0|`` over all ranks and entries (0.0 in a plain process).

    Data parallelism keeps replicas equal only if every rank's optimizer takes the same step
    from the same averaged gradient; this measures whether it did. A collective: every rank
    must call it at the same point.
    """
    if not ctx.launched:
        return 0.0
    flat = torch.cat([p.detach().reshape(-1).float() for p in params])
    reference = flat.clone()
    dist.broadcast(reference, src=0)
    diff = (flat - reference).abs().max().reshape(1)
    dist.all_reduce(diff, op=dist.ReduceOp.MAX)
    return float(diff)
