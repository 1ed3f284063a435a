"""Two ranks (DDP, gloo on CPU) against one rank with the same global batches: KFAC and
Shampoo, 20 steps, then checkpoints moved between world sizes 2 and 1.

Tolerances. float64 runs must agree to ~1e-13 (measured); any algorithmic difference shows at
once. float32 runs differ by reduction order only, which 20 steps amplify; the bound is the
one-process run's own sensitivity, measured by permuting the rows of every global batch (same
maths, another summation order): up to 3.4e-4 for K-FAC with adaptive damping, and for
Shampoo 2.8e-6, 1.9e-7 and 4.8e-7 on three CPUs with different kernels; the two-rank runs
differed from one process by at most 2.6e-4 (K-FAC) and 2.4e-7 (Shampoo).
``test_float32_tolerance_covers_reordered_sums`` keeps that measurement honest: the bound must
cover the reordering noise and sit within two orders of it.
The rank-local control differs by ~1.4, so the bounds sit orders of magnitude below a real error.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import dist_runs as R
import pytest
import torch
import torch.distributed as dist

TOL = {
    "float64": {"rtol": 1e-9, "atol": 1e-10},
    "float32-kfac": {"rtol": 1e-3, "atol": 2e-3},
    "float32-shampoo": {"rtol": 1e-5, "atol": 1e-5},
}


def _tol(run: str) -> dict[str, float]:
    name, dtype = run.split("-")
    return TOL[dtype] if dtype == "float64" else TOL[f"float32-{name.split('_')[0]}"]


def _assert_params_close(got: list, want: list, run: str) -> None:
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, **_tol(run))


def _max_diff(got: list, want: list) -> float:
    return max(float((a - b).abs().max()) for a, b in zip(got, want, strict=True))


@pytest.fixture(scope="module")
def gloo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One-process runs, then one launch of 2 gloo ranks doing every distributed run."""
    out = tmp_path_factory.mktemp("gloo")
    single = R.single_process_runs(out, torch.device("cpu"))
    R.launch(R.worker, 2, out)
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]
    return {"out": out, "single": single, "ranks": ranks}


@pytest.mark.parametrize("run", R.RUNS)
def test_two_ranks_equal_one_rank_with_the_global_batch(gloo: dict, run: str) -> None:
    rank0, rank1 = (r[run] for r in gloo["ranks"])
    for a, b in zip(rank0["params"], rank1["params"], strict=True):
        assert torch.equal(a, b)  # every rank applies the same bits
    _assert_params_close(rank0["params"], gloo["single"][run]["params"], run)
    # 20 steps moved the parameters far beyond the tolerance.
    start = R.params(R.build_model(run, torch.device("cpu")))
    assert _max_diff(rank0["params"], start) > 0.1


@pytest.mark.parametrize("run", [r for r in R.RUNS if r.startswith("kfac")])
def test_kfac_decompositions_are_spread_and_counted_once(gloo: dict, run: str) -> None:
    """Eigendecompositions, or Cholesky inverses with factored damping."""
    counts = [r[run]["decompositions"] for r in gloo["ranks"]]
    assert min(counts) > 0 and sum(counts) == gloo["single"][run]["decompositions"]
    single = gloo["single"][run]["infos"]
    ranks = [r[run]["infos"] for r in gloo["ranks"]]
    assert [_nan_as_none(i) for i in ranks[0]] == [_nan_as_none(i) for i in ranks[1]]
    for r in gloo["ranks"]:  # the group's step statistics, on every rank
        for got, want in zip(r[run]["infos"], single, strict=True):
            assert got.keys() == want.keys()
            for key in ("eigh_retries", "eigh_fallbacks", "skipped_layers", "skipped_params"):
                assert got[key] == want[key]
            assert got["kl_clip_scale"] == pytest.approx(want["kl_clip_scale"], rel=1e-3)


def _nan_as_none(info: dict[str, float]) -> dict[str, float | None]:
    return {k: None if math.isnan(v) else v for k, v in info.items()}


@pytest.mark.parametrize("run", [r for r in R.RUNS if r.startswith("shampoo")])
def test_shampoo_blocks_are_spread_and_roots_counted_over_ranks(gloo: dict, run: str) -> None:
    owned = [r[run]["owned_blocks"] for r in gloo["ranks"]]
    total = sum(len(s["L"]) for s in gloo["single"][run]["state"]["state"].values() if "L" in s)
    assert min(owned) >= 5 and sum(owned) == total
    counts = [r[run]["decompositions"] for r in gloo["ranks"]]
    assert min(counts) > 0 and sum(counts) == gloo["single"][run]["decompositions"]
    single = gloo["single"][run]["infos"]
    assert sum(info["root_updates"] for info in single) > 0
    for r in gloo["ranks"]:  # root counts summed over the ranks, at every step
        assert r[run]["infos"] == single


@pytest.mark.parametrize("dtype", R.DTYPES)
def test_rank_local_factors_would_fail_the_comparison(gloo: dict, dtype: str) -> None:
    """Control: K-FAC on a one-rank group folds only its half-batch into the factors."""
    run = f"kfac_mlp-{dtype}"
    local = [r["rank_local"][dtype] for r in gloo["ranks"]]
    assert _max_diff(local[0], gloo["single"][run]["params"]) > 1e-2
    assert _max_diff(local[0], local[1]) > 1e-2  # and the ranks drift apart


def test_float32_tolerance_covers_reordered_sums(monkeypatch: pytest.MonkeyPatch) -> None:
    """The float32 bounds hold between one-process runs that differ in summation order only."""
    batch = R.global_batch

    def permuted(name: str, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batch(name, step)
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(step))
        return x[order], y[order]

    for run in ("kfac_adaptive-float32", "shampoo_mlp-float32"):
        finals = []
        for source in (batch, permuted):
            monkeypatch.setattr(R, "global_batch", source)
            model = R.build_model(run, torch.device("cpu"))
            R.train(run, model, R.build_optimizer(run, model), range(R.STEPS))
            finals.append(R.params(model))
        _assert_params_close(finals[1], finals[0], run)
        assert _max_diff(finals[1], finals[0]) > _tol(run)["atol"] / 100  # not a loose bound


@pytest.mark.parametrize("cnn", [False, True])
def test_mean_of_half_batch_factors_is_the_global_batch_factor(cnn: bool) -> None:
    """What the factor all-reduce relies on: with the loss a mean over each rank's batch, the
    mean of the ranks' ``A`` and ``G`` (``G`` rescaled by the local batch size) is the global
    batch's, exactly in float64."""
    run = "kfac_cnn-float64" if cnn else "kfac_mlp-float64"
    x, y = (t.double() for t in R.global_batch(run, 0))
    factors = []
    for rows in (slice(0, 16), slice(0, 8), slice(8, 16)):
        model = R.build_model(run, torch.device("cpu"))
        opt = R.build_optimizer(run, model)
        R.loss_fn(model(x[rows]), y[rows]).backward()
        opt.step()
        factors.append(opt.factors())
    whole, first, second = factors
    for name, pair in whole.items():
        for i, factor in enumerate(pair):  # A, then G
            mean = (first[name][i] + second[name][i]) / 2
            torch.testing.assert_close(mean, factor, rtol=1e-12, atol=1e-13)
        assert not torch.allclose(first[name][1], pair[1], rtol=1e-3)  # the halves differ


# ----------------------------------------------------------------- checkpoints across sizes


@pytest.mark.parametrize("run", R.RUNS)
def test_state_saved_on_two_ranks_is_complete_and_the_same_on_both(gloo: dict, run: str) -> None:
    saved = [
        torch.load(gloo["out"] / f"{run}-rank{r}-ckpt.pt", weights_only=True) for r in range(2)
    ]
    _assert_same(saved[0]["opt"], saved[1]["opt"], exact=True)
    _assert_same(saved[0]["opt"], gloo["single"][run]["state"], exact=False, tol=_tol(run))


@pytest.mark.parametrize("run", R.RUNS)
def test_two_rank_checkpoint_continues_on_one_rank(gloo: dict, run: str) -> None:
    saved = torch.load(gloo["out"] / f"{run}-rank0-ckpt.pt", weights_only=True)
    model = R.build_model(run, torch.device("cpu"))
    model.load_state_dict(saved["model"])
    opt = R.build_optimizer(run, model)
    opt.load_state_dict(saved["opt"])
    R.train(run, model, opt, range(R.SAVE_AT, R.STEPS))
    _assert_params_close(R.params(model), gloo["single"][run]["params"], run)


@pytest.mark.parametrize("run", R.RUNS)
def test_one_rank_checkpoint_continues_on_two_ranks(gloo: dict, run: str) -> None:
    resumed = [r[run]["resumed"] for r in gloo["ranks"]]
    for a, b in zip(*resumed, strict=True):
        assert torch.equal(a, b)
    _assert_params_close(resumed[0], gloo["single"][run]["params"], run)


def _signed(q: torch.Tensor) -> torch.Tensor:
    """The eigenvector matrix with each column's largest entry (in magnitude) made positive."""
    largest = q.gather(0, q.abs().argmax(0, keepdim=True))
    return q * torch.where(largest < 0, -1.0, 1.0).to(q.dtype)


def _assert_same(a: Any, b: Any, exact: bool, tol: dict | None = None) -> None:
    """Equal structure (keys, list lengths, None entries) and equal or close tensors."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape
        assert torch.equal(a, b) if exact else torch.allclose(a, b, **(tol or {}))
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            if key in ("QA", "QG") and not exact:  # eigenvectors: each column's sign is arbitrary
                _assert_same(_signed(a[key]), _signed(b[key]), exact, tol)
            else:
                _assert_same(a[key], b[key], exact, tol)
    elif isinstance(a, list | tuple):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y, exact, tol)
    elif isinstance(a, float) and not exact:
        assert a == pytest.approx(b, rel=1e-6)
    else:
        assert a == b


# ----------------------------------------------------------------- NCCL


@pytest.mark.skipif(
    not dist.is_nccl_available() or torch.cuda.device_count() < 2,
    reason="the NCCL variant needs NCCL and two CUDA devices (one per rank)",
)
def test_two_nccl_ranks_equal_one_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)  # as in the ranks
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    single = R.single_process_runs(tmp_path, torch.device("cuda", 0))
    R.launch(R.worker, 2, tmp_path, backend="nccl")
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for run in R.RUNS:
        for a, b in zip(ranks[0][run]["params"], ranks[1][run]["params"], strict=True):
            assert torch.equal(a, b)
        _assert_params_close(ranks[0][run]["params"], single[run]["params"], run)
        _assert_params_close(ranks[0][run]["resumed"], single[run]["params"], run)
