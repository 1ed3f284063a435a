"""Flat buckets of tensors for collectives (pure tensor functions, no communication).

A collective on one large contiguous buffer costs one latency instead of one per tensor, so the
tensors of a collective are packed, by dtype, into flat buckets of at most ``bucket_bytes``
(a larger tensor gets a bucket of its own), as DDP does for gradients.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

DEFAULT_BUCKET_BYTES = 25 * 2**20  # DDP's default bucket size (25 MiB)


def bucket_indices(tensors: Sequence[torch.Tensor], bucket_bytes: int) -> list[list[int]]:
    """Indices of ``tensors`` grouped into buckets of one dtype and at most ``bucket_bytes``.

    Dtypes come in the order of their first appearance and tensors keep their order within a
    dtype, so equal shape-and-dtype lists give equal buckets on every rank.

    Raises:
        ValueError: if ``bucket_bytes < 1``.
    """
    if not isinstance(bucket_bytes, int) or bucket_bytes < 1:
        raise ValueError(f"bucket_bytes must be an integer >= 1, got {bucket_bytes!r}")
    by_dtype: dict[torch.dtype, list[int]] = {}
    for i, t in enumerate(tensors):
        by_dtype.setdefault(t.dtype, []).append(i)
    buckets: list[list[int]] = []
    for indices in by_dtype.values():
        current: list[int] = []
        size = 0
        for i in indices:
            nbytes = tensors[i].numel() * tensors[i].element_size()
            if current and size + nbytes > bucket_bytes:
                buckets.append(current)
                current, size = [], 0
            current.append(i)
            size += nbytes
        buckets.append(current)
    return buckets


def flatten(tensors: Sequence[torch.Tensor], device: torch.device) -> torch.Tensor:
    """One flat ``(Σ numel,)`` copy of same-dtype ``tensors`` on ``device``."""
    return torch.cat([t.detach().reshape(-1).to(device) for t in tensors])


@torch.no_grad()
def unflatten_into(flat: torch.Tensor, tensors: Sequence[torch.Tensor]) -> None:
    """Copy consecutive pieces of ``flat: (Σ numel,)`` back into ``tensors`` (any device).

    Raises:
        ValueError: if the sizes do not add up.
    """
    total = sum(t.numel() for t in tensors)
    if flat.numel() != total:
        raise ValueError(f"unflatten_into: buffer has {flat.numel()} values, tensors {total}")
    offset = 0
    for t in tensors:
        t.copy_(flat[offset : offset + t.numel()].view(t.shape))
        offset += t.numel()


def empty_like_flat(tensors: Sequence[torch.Tensor], device: torch.device) -> torch.Tensor:
    """An uninitialised flat buffer that :func:`flatten` of ``tensors`` would fill."""
    return torch.empty(sum(t.numel() for t in tensors), dtype=tensors[0].dtype, device=device)
