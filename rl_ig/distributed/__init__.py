"""``torch.distributed`` glue for the optimizers: bucketed factor all-reduce, work assignment
across ranks, broadcast from owners and all-gather of uneven payloads.

Every helper behaves as the single-process identity when ``torch.distributed`` is not
initialised, so code built on it runs unchanged in one process.
"""

from rl_ig.distributed.assignment import assign_work
from rl_ig.distributed.buckets import DEFAULT_BUCKET_BYTES, bucket_indices, flatten, unflatten_into
from rl_ig.distributed.comm import (
    all_gather_flat,
    all_reduce_bucketed,
    all_reduce_mean_bucketed,
    all_reduce_scalars,
    broadcast_from_owners,
    check_backend,
    comm_device,
    world,
)

__all__ = [
    "DEFAULT_BUCKET_BYTES",
    "all_gather_flat",
    "all_reduce_bucketed",
    "all_reduce_mean_bucketed",
    "all_reduce_scalars",
    "assign_work",
    "broadcast_from_owners",
    "bucket_indices",
    "check_backend",
    "comm_device",
    "flatten",
    "unflatten_into",
    "world",
]
