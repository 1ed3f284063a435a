"""rl_ig.distributed: one process (the identity), pure bucketing and assignment, and the
collectives on 2 gloo ranks against values computed by hand."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dist_runs as R
import pytest
import torch
import torch.distributed as dist
from torch import nn

from rl_ig.distributed import (
    all_gather_flat,
    all_reduce_bucketed,
    all_reduce_mean_bucketed,
    all_reduce_scalars,
    assign_work,
    broadcast_from_owners,
    bucket_indices,
    comm_device,
    flatten,
    unflatten_into,
    world,
)
from rl_ig.optim import KFAC, Shampoo

# ----------------------------------------------------------------- one process


def _mixed() -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return [
        torch.randn(3, 4, generator=gen),
        torch.randn(5, generator=gen, dtype=torch.float64),
        torch.randn(2, 2, 2, generator=gen),
        torch.randn(1, generator=gen),
        torch.randn(4, 3, generator=gen, dtype=torch.float64).T,  # not contiguous
    ]


def test_without_distributed_every_helper_is_the_identity() -> None:
    assert not dist.is_initialized() and world() == (0, 1)
    tensors = _mixed()
    before = [t.clone() for t in tensors]
    all_reduce_mean_bucketed(tensors)
    all_reduce_bucketed(tensors)
    broadcast_from_owners(tensors, [0] * len(tensors))
    assert all(torch.equal(a, b) for a, b in zip(tensors, before))
    assert all_gather_flat(tensors[1]) == [tensors[1]]
    assert all_reduce_scalars([1.5, -2.0], torch.device("cpu")) == [1.5, -2.0]


def test_buckets_group_by_dtype_keep_order_and_respect_the_size() -> None:
    tensors = _mixed()
    # float32 sizes 48, 32, 4 bytes; float64 40, 96 bytes.
    assert bucket_indices(tensors, 10**6) == [[0, 2, 3], [1, 4]]
    assert bucket_indices(tensors, 80) == [[0, 2], [3], [1], [4]]
    assert bucket_indices(tensors, 1) == [[0], [2], [3], [1], [4]]  # too large: one each
    with pytest.raises(ValueError, match="bucket_bytes must be an integer >= 1, got 0"):
        bucket_indices(tensors, 0)


def test_flatten_and_unflatten_round_trip_shapes_dtypes_and_values() -> None:
    tensors = _mixed()
    for bucket in bucket_indices(tensors, 80):
        members = [tensors[i] for i in bucket]
        flat = flatten(members, torch.device("cpu"))
        assert flat.dim() == 1 and flat.dtype == members[0].dtype
        assert flat.numel() == sum(t.numel() for t in members)
        targets = [torch.empty_like(t) for t in members]
        unflatten_into(flat, targets)
        for t, target in zip(members, targets):
            assert target.shape == t.shape and target.dtype == t.dtype and torch.equal(target, t)
    with pytest.raises(ValueError, match="buffer has 3 values, tensors 12"):
        unflatten_into(torch.zeros(3), [torch.zeros(3, 4)])


def test_assign_work_is_greedy_balanced_and_deterministic() -> None:
    costs = [8.0, 1.0, 27.0, 64.0, 8.0, 1.0, 27.0]
    owners = assign_work(costs, 2)
    # Largest first, each to the least-loaded rank (loads after it in brackets):
    # 64→0 [64, 0], 27→1 [64, 27], 27→1 [64, 54], 8→1 [64, 62], 8→1 [64, 70], 1→0, 1→0.
    assert owners == assign_work(costs, 2) == [1, 0, 1, 0, 1, 0, 1]
    loads = [sum(c for c, o in zip(costs, owners) if o == r) for r in range(2)]
    assert loads == [66.0, 70.0]  # 70 is optimal: no subset of the costs sums to 68 or 69
    assert assign_work(costs, 1) == [0] * len(costs)
    assert sorted(assign_work([1.0] * 6, 3)) == [0, 0, 1, 1, 2, 2]
    assert assign_work([], 4) == []
    with pytest.raises(ValueError, match="world_size must be an integer >= 1, got 0"):
        assign_work(costs, 0)
    with pytest.raises(ValueError, match="costs must be finite numbers >= 0, got -1.0"):
        assign_work([1.0, -1.0], 2)


def test_backend_and_device_mismatches_name_the_fix() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 1)
    assert comm_device(cpu, "gloo") == cpu
    assert comm_device(cuda, "nccl") == cuda
    assert comm_device(cuda, "gloo") == cpu  # staged through the CPU
    assert comm_device(cuda, "cpu:gloo,cuda:nccl") == cuda
    assert comm_device(cpu, "cpu:gloo,cuda:nccl") == cpu
    with pytest.raises(ValueError, match=r"NCCL backend needs CUDA tensors, got cpu ones; move"):
        comm_device(cpu, "nccl")
    with pytest.raises(ValueError, match=r"unsupported torch.distributed backend 'mpi'; init"):
        comm_device(cpu, "mpi")


def test_a_process_group_without_distributed_is_reported() -> None:
    group: Any = object()
    message = "process_group was given but torch.distributed is not initialised"
    with pytest.raises(ValueError, match=message):
        KFAC(nn.Linear(2, 2), process_group=group)
    with pytest.raises(ValueError, match=message):
        Shampoo(nn.Linear(2, 2).parameters(), process_group=group)


def test_bad_arguments_of_the_collectives_are_reported() -> None:
    with pytest.raises(ValueError, match="owner rank 1 is outside the process group of size 1"):
        broadcast_from_owners([torch.zeros(2)], [1])
    with pytest.raises(ValueError, match="2 tensors but 1 owners; pass one owner per tensor"):
        broadcast_from_owners([torch.zeros(2), torch.zeros(1)], [0])
    with pytest.raises(ValueError, match=r"tensor must be 1-D, got shape \(2, 2\)"):
        all_gather_flat(torch.zeros(2, 2))


# ----------------------------------------------------------------- two gloo ranks


def _rank_tensors(rank: int) -> list[torch.Tensor]:
    """Per-rank values: ``t + 10·rank`` of :func:`_mixed`."""
    return [t + 10.0 * rank for t in _mixed()]


def helpers_worker(rank: int, world_size: int, init_file: str, out_dir: str, backend: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        backend, init_method=f"file://{init_file}", rank=rank, world_size=world_size
    )
    try:
        result: dict[str, Any] = {"world": world()}
        mean = _rank_tensors(rank)
        all_reduce_mean_bucketed(mean, bucket_bytes=64)  # several buckets
        summed = _rank_tensors(rank)
        all_reduce_bucketed(summed)
        owners = [1, 0, 1, 1, 0]
        shared = _rank_tensors(rank)
        broadcast_from_owners(shared, owners, bucket_bytes=50)
        uneven = torch.arange(3 + 2 * rank, dtype=torch.float64) + 100 * rank
        empty_on_1 = torch.ones(0 if rank else 4)
        result.update(
            mean=mean,
            summed=summed,
            shared=shared,
            gathered=all_gather_flat(uneven),  # sizes gathered too
            gathered_known=all_gather_flat(uneven, [3, 5]),
            gathered_empty=all_gather_flat(empty_on_1, [4, 0]),
            scalars=all_reduce_scalars([float(rank), 2.0], torch.device("cpu")),
        )
        try:  # the same wrong sizes on both ranks: both raise before any collective
            all_gather_flat(uneven, [3, 5, 1])
        except ValueError as error:
            result["error"] = str(error)
        torch.save(result, Path(out_dir) / f"helpers{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    out = tmp_path_factory.mktemp("helpers")
    R.launch(helpers_worker, 2, out)
    return [torch.load(out / f"helpers{r}.pt", weights_only=True) for r in range(2)]


def test_two_ranks_know_their_place(two_ranks: list) -> None:
    assert [r["world"] for r in two_ranks] == [(0, 2), (1, 2)]


def test_bucketed_all_reduce_averages_and_sums_in_place(two_ranks: list) -> None:
    ranks = [_rank_tensors(0), _rank_tensors(1)]
    for result in two_ranks:
        for got, a, b in zip(result["mean"], *ranks):
            assert got.dtype == a.dtype and got.shape == a.shape
            torch.testing.assert_close(got, (a + b) / 2, rtol=0, atol=1e-6)
        for got, a, b in zip(result["summed"], *ranks):
            torch.testing.assert_close(got, a + b, rtol=0, atol=1e-6)
    assert two_ranks[0]["scalars"] == two_ranks[1]["scalars"] == [0.5, 2.0]


def test_broadcast_from_owners_gives_every_rank_the_owners_values(two_ranks: list) -> None:
    ranks = [_rank_tensors(0), _rank_tensors(1)]
    for result in two_ranks:
        for got, owner, *values in zip(result["shared"], [1, 0, 1, 1, 0], *ranks):
            assert torch.equal(got, values[owner])


def test_all_gather_of_uneven_sizes_unpads(two_ranks: list) -> None:
    want = [torch.arange(3, dtype=torch.float64), torch.arange(5, dtype=torch.float64) + 100]
    for result in two_ranks:
        for key in ("gathered", "gathered_known"):
            assert len(result[key]) == 2
            assert all(torch.equal(g, w) for g, w in zip(result[key], want))
        assert [t.shape[0] for t in result["gathered_empty"]] == [4, 0]
        assert torch.equal(result["gathered_empty"][0], torch.ones(4))
        assert result["error"] == (
            "all_gather_flat: 3 sizes for a process group of size 2; pass one size per rank"
        )
