"""Shampoo against dense float64 matrix roots, Adam/AdamW, blocking, amortisation, checkpoints,
broken factors, bad input and convolutions."""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rl_ig.optim import Shampoo
from rl_ig.optim.shampoo_batches import BlockBatch
from rl_ig.optim.shampoo_blocks import block_slices

DT = torch.float64
TOL = {"rtol": 1e-10, "atol": 1e-12}
PLAIN = {"betas": (0.0, 1.0), "grafting": "none", "start_preconditioning_step": 1}


def _randn(*shape: int, seed: int, dtype: torch.dtype = DT) -> torch.Tensor:
    return torch.randn(*shape, dtype=dtype, generator=torch.Generator().manual_seed(seed))


def dense_root(m: torch.Tensor, eps: float) -> torch.Tensor:
    """``(M + εI)^(-1/4)`` from a float64 eigendecomposition, checked by raising it to the 4th."""
    shifted = m.double() + eps * torch.eye(m.shape[0], dtype=DT)
    d, q = torch.linalg.eigh(shifted)
    root = q @ torch.diag(d**-0.25) @ q.T
    fourth = torch.linalg.matrix_power(torch.linalg.inv(root), 4)
    torch.testing.assert_close(fourth, shifted, rtol=0, atol=1e-9 * float(shifted.norm()))
    return root


def _run(
    param: nn.Parameter, grads: list[torch.Tensor], **kw
) -> tuple[list[torch.Tensor], Shampoo]:
    """Step ``Shampoo([param], **kw)`` through ``grads``; the parameter after each step."""
    opt = Shampoo([param], **kw)
    after = []
    for g in grads:
        param.grad = g.clone()
        opt.step()
        after.append(param.detach().clone())
    return after, opt


# ----------------------------------------------------------------- 1. the dense contract


@pytest.mark.parametrize("eps", [1e-12, 1e-3])
def test_one_step_is_the_dense_contract_formula(eps: float) -> None:
    w0, g = _randn(5, 3, seed=0), _randn(5, 3, seed=1)
    (w1,), _ = _run(nn.Parameter(w0.clone()), [g], lr=0.3, epsilon=eps, **PLAIN)
    expected = w0 - 0.3 * dense_root(g @ g.T, eps) @ g @ dense_root(g.T @ g, eps)
    torch.testing.assert_close(w1, expected, rtol=1e-10, atol=1e-10 if eps < 1e-6 else 1e-12)
    assert not torch.allclose(w1, w0 - 0.3 * g, rtol=1e-3)  # not an SGD step


def test_sum_accumulation_over_several_steps() -> None:
    w0, grads = _randn(5, 3, seed=0), [_randn(5, 3, seed=s) for s in range(1, 6)]
    kw = {"lr": 0.1, "epsilon": 1e-4, "precondition_frequency": 1, **PLAIN}
    after, _ = _run(nn.Parameter(w0.clone()), grads, **kw)
    w, big_l, big_r = w0.clone(), torch.zeros(5, 5, dtype=DT), torch.zeros(3, 3, dtype=DT)
    for g, got in zip(grads, after):
        big_l, big_r = big_l + g @ g.T, big_r + g.T @ g
        w = w - 0.1 * dense_root(big_l, 1e-4) @ g @ dense_root(big_r, 1e-4)
        torch.testing.assert_close(got, w, **TOL)


def test_ema_factors_and_momentum_with_bias_correction() -> None:
    w0, grads = _randn(4, 3, seed=0), [_randn(4, 3, seed=s) for s in range(1, 5)]
    b1, b2, eps = 0.5, 0.8, 1e-4
    kw = {"betas": (b1, b2), "grafting": "none", "start_preconditioning_step": 1}
    after, _ = _run(
        nn.Parameter(w0.clone()), grads, lr=0.1, epsilon=eps, precondition_frequency=1, **kw
    )
    w, m = w0.clone(), torch.zeros_like(w0)
    big_l, big_r = torch.zeros(4, 4, dtype=DT), torch.zeros(3, 3, dtype=DT)
    for t, (g, got) in enumerate(zip(grads, after), start=1):
        m = b1 * m + (1 - b1) * g
        big_l, big_r = b2 * big_l + (1 - b2) * g @ g.T, b2 * big_r + (1 - b2) * g.T @ g
        c1, c2 = 1 - b1**t, 1 - b2**t
        w = w - 0.1 * dense_root(big_l / c2, eps) @ (m / c1) @ dense_root(big_r / c2, eps)
        torch.testing.assert_close(got, w, **TOL)


# ----------------------------------------------------------------- 2. the grafting method alone


def _mlp(seed: int, dtype: torch.dtype = DT) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)).to(dtype)


def _train(model: nn.Module, opt: torch.optim.Optimizer, steps: range) -> list[float]:
    dtype = next(model.parameters()).dtype
    losses = []
    for step in steps:
        x, y = _randn(16, 4, seed=100 + step, dtype=dtype), _randn(16, 3, seed=200 + step)
        opt.zero_grad()
        loss = F.mse_loss(model(x), y.to(dtype))
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


NEVER = 10**9
GRAFTED = [
    ("adam", {"betas": (0.8, 1.0)}, torch.optim.Adam, {"betas": (0.8, 0.99), "eps": 1e-6}),
    (
        "adam",
        {"betas": (0.8, 1.0), "weight_decay": 0.05},
        torch.optim.AdamW,
        {"betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.05},
    ),
    ("adagrad", {"betas": (0.0, 1.0)}, torch.optim.Adagrad, {"eps": 1e-6}),
    ("sgd", {"betas": (0.0, 1.0)}, torch.optim.SGD, {}),
]


@pytest.mark.parametrize(("grafting", "ours_kw", "ref_cls", "ref_kw"), GRAFTED)
def test_never_preconditioning_is_the_grafting_method(
    grafting: str, ours_kw: dict, ref_cls: type[torch.optim.Optimizer], ref_kw: dict
) -> None:
    ours, ref = _mlp(0), _mlp(0)
    opt = Shampoo(
        ours.parameters(),
        lr=1e-2,
        start_preconditioning_step=NEVER,
        grafting=grafting,
        grafting_beta2=0.99,
        grafting_epsilon=1e-6,
        **ours_kw,
    )
    _train(ours, opt, range(50))
    _train(ref, ref_cls(ref.parameters(), lr=1e-2, foreach=False, **ref_kw), range(50))
    for a, b in zip(ours.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, **TOL)
    assert opt.last_step_info["preconditioned_params"] == 0.0
    assert bool(opt.state[ours[0].weight]["L"][0].abs().sum() > 0)  # factors still accumulate


# ----------------------------------------------------------------- 3. blocking


def test_one_block_covering_the_matrix_equals_unblocked() -> None:
    w0, grads = _randn(6, 4, seed=0), [_randn(6, 4, seed=s) for s in range(1, 7)]
    kw = {"lr": 0.05, "start_preconditioning_step": 2, "precondition_frequency": 2}
    covering, opt = _run(nn.Parameter(w0.clone()), grads, max_preconditioner_dim=6, **kw)
    unblocked, _ = _run(nn.Parameter(w0.clone()), grads, max_preconditioner_dim=10**6, **kw)
    assert len(opt.state[opt.param_groups[0]["params"][0]]["L"]) == 1
    for a, b in zip(covering, unblocked):
        assert torch.equal(a, b)


def _blockwise_sgd_grafted(
    w0: torch.Tensor,
    grads: list[torch.Tensor],
    blocks: list[tuple[slice, slice]],
    eps: float,
    lr: float,
) -> list[torch.Tensor]:
    """Dense float64 reference: per block, summed factors, roots every step, SGD grafting."""
    factors = {b: (0.0, 0.0) for b in range(len(blocks))}
    w, out = w0.clone(), []
    for g in grads:
        step = torch.empty_like(w)
        for b, (r, c) in enumerate(blocks):
            gb = g[r, c]
            big_l, big_r = factors[b][0] + gb @ gb.T, factors[b][1] + gb.T @ gb
            factors[b] = (big_l, big_r)
            d = dense_root(big_l, eps) @ gb @ dense_root(big_r, eps)
            step[r, c] = d * gb.norm() / d.norm()  # per-block grafting onto SGD
        w = w - lr * step
        out.append(w)
    return out


BLOCKED = {"betas": (0.0, 1.0), "start_preconditioning_step": 1, "precondition_frequency": 1}


@pytest.mark.parametrize(
    ("shape", "rows", "cols"),
    [
        # 7 = 3 + 2 + 2 and 5 = 3 + 2: four block shapes, computed in four batches.
        ((7, 5), [(0, 3), (3, 5), (5, 7)], [(0, 3), (3, 5)]),
        # 6 = 2 + 2 + 2 and 4 = 2 + 2: one regular grid of six 2 x 2 blocks, one batch.
        ((6, 4), [(0, 2), (2, 4), (4, 6)], [(0, 2), (2, 4)]),
    ],
)
def test_blocks_are_preconditioned_and_grafted_independently(
    shape: tuple[int, int], rows: list[tuple[int, int]], cols: list[tuple[int, int]]
) -> None:
    w0, grads = _randn(*shape, seed=0), [_randn(*shape, seed=s) for s in range(1, 4)]
    eps, dim = 1e-4, max(b - a for a, b in rows + cols)
    param = nn.Parameter(w0.clone())
    after, opt = _run(
        param, grads, lr=0.1, epsilon=eps, max_preconditioner_dim=dim, grafting="sgd", **BLOCKED
    )
    blocks = [(slice(*r), slice(*c)) for r in rows for c in cols]
    state = opt.state[param]
    assert [tuple(x.shape) for x in state["L"]] == [(r.stop - r.start,) * 2 for r, _ in blocks]
    assert [tuple(x.shape) for x in state["R"]] == [(c.stop - c.start,) * 2 for _, c in blocks]
    for got, expected in zip(after, _blockwise_sgd_grafted(w0, grads, blocks, eps, 0.1)):
        torch.testing.assert_close(got, expected, **TOL)


def test_even_split_takes_the_fewest_pieces_of_nearly_equal_size() -> None:
    sizes = {
        (784, 256): [196] * 4,
        (785, 256): [197, 196, 196, 196],
        (400, 128): [100] * 4,
        (256, 256): [256],
        (5, 1): [1] * 5,
    }
    for (size, dim), expected in sizes.items():
        pieces = block_slices(size, dim)
        assert [s.stop - s.start for s in pieces] == expected
        assert pieces[0].start == 0 and pieces[-1].stop == size
        assert all(a.stop == b.start for a, b in zip(pieces, pieces[1:]))
    tail = block_slices(784, 256, even=False)
    assert [s.stop - s.start for s in tail] == [256, 256, 256, 16]


def test_a_state_saved_with_the_older_block_layout_loads_and_continues() -> None:
    """States saved before ``block_split`` was recorded used ``[0, d), [d, 2d), …`` pieces."""
    w0, grads = _randn(7, 5, seed=0), [_randn(7, 5, seed=s) for s in range(1, 4)]
    eps, lr = 1e-4, 0.1
    kw = {"lr": lr, "epsilon": eps, "max_preconditioner_dim": 3, "grafting": "sgd", **BLOCKED}
    rows, cols = [slice(0, 3), slice(3, 6), slice(6, 7)], [slice(0, 3), slice(3, 5)]
    blocks = [(r, c) for r in rows for c in cols]
    expected = _blockwise_sgd_grafted(w0, grads, blocks, eps, lr)
    # The state after two steps, in the older layout, built from the dense reference.
    param = nn.Parameter(expected[1].clone())
    opt = Shampoo([param], **kw)
    saved = opt.state_dict()
    left = [sum(g[r, c] @ g[r, c].T for g in grads[:2]) for r, c in blocks]
    right = [sum(g[r, c].T @ g[r, c] for g in grads[:2]) for r, c in blocks]
    roots = {"L_root": [dense_root(x, eps) for x in left]}
    roots["R_root"] = [dense_root(x, eps) for x in right]
    saved["state"] = {0: {"step": 2, "block_dim": 3, "L": left, "R": right, **roots}}
    opt.load_state_dict(saved)
    param.grad = grads[2].clone()
    opt.step()
    assert [tuple(x.shape) for x in opt.state[param]["L"]] == [(3, 3)] * 4 + [(1, 1)] * 2
    torch.testing.assert_close(param.detach(), expected[2], **TOL)


# ----------------------------------------------------------------- 4. amortisation


def test_roots_are_recomputed_at_the_stated_steps_and_reused_in_between() -> None:
    w0, grads = _randn(4, 3, seed=0), [_randn(4, 3, seed=s) for s in range(1, 9)]
    eps, lr = 1e-4, 0.1
    opt = Shampoo(
        [param := nn.Parameter(w0.clone())],
        lr=lr,
        epsilon=eps,
        betas=(0.0, 1.0),
        grafting="none",
        start_preconditioning_step=2,
        precondition_frequency=3,
    )
    # Roots at the first preconditioned step (2) and at multiples of 3; SGD at step 1.
    recompute = {2, 3, 6}
    w, big_l, big_r = w0.clone(), torch.zeros(4, 4, dtype=DT), torch.zeros(3, 3, dtype=DT)
    roots: tuple[torch.Tensor, torch.Tensor] | None = None
    stale_differs = False
    for t, g in enumerate(grads, start=1):
        param.grad = g.clone()
        opt.step()
        big_l, big_r = big_l + g @ g.T, big_r + g.T @ g  # accumulated from step 1 on
        assert opt.last_step_info["root_updates"] == float(t in recompute)
        if t in recompute:
            roots = dense_root(big_l, eps), dense_root(big_r, eps)
        if roots is None:
            w = w - lr * g
        else:
            w = w - lr * roots[0] @ g @ roots[1]
            # The same step with fresh roots differs on the steps that reuse roots.
            fresh = dense_root(big_l, eps) @ g @ dense_root(big_r, eps)
            stale_differs |= not torch.allclose(fresh, roots[0] @ g @ roots[1], rtol=1e-6)
        torch.testing.assert_close(param.detach(), w, **TOL)
    assert stale_differs


# ----------------------------------------------------------------- 5. checkpoints


def _make(seed: int) -> tuple[nn.Sequential, Shampoo]:
    model = _mlp(seed, torch.float32)
    opt = Shampoo(
        model.parameters(),
        lr=1e-2,
        betas=(0.9, 0.95),
        weight_decay=1e-2,
        precondition_frequency=2,
        start_preconditioning_step=3,
        max_preconditioner_dim=5,
    )
    return model, opt


def test_state_dict_round_trip_continues_bit_identically() -> None:
    model, opt = _make(0)
    _train(model, opt, range(9))
    half, half_opt = _make(0)
    _train(half, half_opt, range(5))  # roots from step 4 are reused at step 5 and 6
    buffer = io.BytesIO()
    torch.save({"model": half.state_dict(), "opt": half_opt.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    resumed, resumed_opt = _make(seed=1)
    resumed.load_state_dict(saved["model"])
    resumed_opt.load_state_dict(saved["opt"])
    assert resumed_opt.state[resumed[0].weight]["L"][0] is not saved["opt"]["state"][0]["L"][0]
    _train(resumed, resumed_opt, range(5, 9))
    for a, b in zip(model.parameters(), resumed.parameters()):
        assert torch.equal(a, b)
    assert resumed_opt.last_step_info == opt.last_step_info


def test_low_precision_parameters_keep_float32_factors_through_a_checkpoint() -> None:
    param = nn.Parameter(_randn(4, 3, seed=0).to(torch.bfloat16))
    opt = Shampoo([param], start_preconditioning_step=1)
    param.grad = _randn(4, 3, seed=1).to(torch.bfloat16)
    opt.step()
    fresh = Shampoo([param], start_preconditioning_step=1)
    fresh.load_state_dict(opt.state_dict())
    for key in ("L", "R", "L_root", "R_root"):
        assert fresh.state[param][key][0].dtype == torch.float32
        assert torch.equal(fresh.state[param][key][0], opt.state[param][key][0])
    assert fresh.state[param]["exp_avg"].dtype == torch.bfloat16


# ----------------------------------------------------------------- 6. robustness


def test_non_finite_gradient_skips_the_parameter_and_leaves_its_state_alone() -> None:
    model = _mlp(0)
    opt = Shampoo(model.parameters(), lr=1e-2, start_preconditioning_step=1)
    _train(model, opt, range(2))
    before = [p.detach().clone() for p in model.parameters()]
    weight = model[0].weight
    factor = opt.state[weight]["L"][0].clone()
    opt.zero_grad()
    F.mse_loss(model(_randn(16, 4, seed=7)), _randn(16, 3, seed=8)).backward()
    assert weight.grad is not None
    weight.grad[0, 0] = float("nan")
    opt.step()
    assert opt.last_step_info["skipped_params"] == 1.0
    assert torch.equal(weight.detach(), before[0])
    assert all(not torch.equal(p.detach(), b) for p, b in list(zip(model.parameters(), before))[1:])
    assert opt.state[weight]["step"] == 2 and torch.equal(opt.state[weight]["L"][0], factor)
    _train(model, opt, range(3, 4))
    assert opt.last_step_info["skipped_params"] == 0.0
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())


def test_zero_and_rank_one_gradients_give_finite_steps() -> None:
    w0 = _randn(5, 3, seed=0, dtype=torch.float32)
    (after,), opt = _run(
        nn.Parameter(w0.clone()), [torch.zeros(5, 3)], start_preconditioning_step=1
    )
    assert torch.equal(after, w0)  # 0/0 grafting ratio taken as 0
    assert opt.last_step_info["preconditioned_params"] == 1.0
    u, v = _randn(5, seed=1, dtype=torch.float32), _randn(3, seed=2, dtype=torch.float32)
    g = torch.outer(u, v)  # L = |v|²uuᵀ and R = |u|²vvᵀ are singular (ε = 1e-12)
    (after,), _ = _run(nn.Parameter(w0.clone()), [g], lr=1.0, **PLAIN)
    # In float32, G = uvᵀ is rank one only to round-off, and the roots (0 + ε)^(-1/4) of the
    # null spaces of L and R amplify that residue by up to ε^(-1/2): the step is finite.
    assert bool(torch.isfinite(after).all())
    # In float64 the residue is 1e-9 times smaller: the step is G / sqrt(|u|²|v|² + ε) = G / ‖G‖.
    w0, g = w0.double(), torch.outer(u.double(), v.double())
    (after,), _ = _run(nn.Parameter(w0.clone()), [g], lr=1.0, **PLAIN)
    torch.testing.assert_close(w0 - after, g / g.norm(), rtol=1e-6, atol=1e-6)


def _failing_eigh(monkeypatch: pytest.MonkeyPatch, fails: Callable[[torch.Tensor], bool]) -> None:
    original = torch.linalg.eigh

    def eigh(matrix: torch.Tensor, *args, **kwargs):
        if fails(matrix):
            raise torch.linalg.LinAlgError("forced failure")
        return original(matrix, *args, **kwargs)

    monkeypatch.setattr(torch.linalg, "eigh", eigh)


def test_failing_float32_eigh_is_retried_in_float64(monkeypatch: pytest.MonkeyPatch) -> None:
    w0, g = _randn(5, 3, seed=0, dtype=torch.float32), _randn(5, 3, seed=1, dtype=torch.float32)
    kw = {"lr": 0.1, "epsilon": 1e-3, **PLAIN}
    (clean,), _ = _run(nn.Parameter(w0.clone()), [g], **kw)
    _failing_eigh(monkeypatch, lambda m: m.dtype == torch.float32)
    (retried,), opt = _run(nn.Parameter(w0.clone()), [g], **kw)
    assert opt.last_step_info["eigh_retries"] == 2.0  # L and R
    assert opt.last_step_info["eigh_fallbacks"] == 0.0
    gd = g.double()
    # The retry decomposes X + 10εI, and the root adds ε: (X + 11εI)^(-1/4).
    expected = w0.double() - 0.1 * dense_root(gd @ gd.T, 0.011) @ gd @ dense_root(gd.T @ gd, 0.011)
    torch.testing.assert_close(retried.double(), expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(retried, clean, rtol=1e-6)


def test_a_failing_batched_eigh_falls_back_to_one_factor_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Six same-shaped blocks take one batched eigh per factor; when that call fails, every
    factor is decomposed on its own, which gives the same step."""
    w0, grads = _randn(6, 4, seed=0), [_randn(6, 4, seed=s) for s in range(1, 3)]
    kw = {"lr": 0.1, "epsilon": 1e-4, "max_preconditioner_dim": 2, "grafting": "sgd", **BLOCKED}
    clean, _ = _run(nn.Parameter(w0.clone()), grads, **kw)
    _failing_eigh(monkeypatch, lambda m: m.ndim == 3)
    (_, fallback), opt = _run(nn.Parameter(w0.clone()), grads, **kw)
    assert opt.last_step_info["eigh_retries"] == 0.0
    assert opt.last_step_info["eigh_fallbacks"] == 0.0
    assert opt.last_step_info["root_updates"] == 6.0
    torch.testing.assert_close(fallback, clean[1], **TOL)


def test_eigh_failing_twice_keeps_the_previous_roots(monkeypatch: pytest.MonkeyPatch) -> None:
    w0, g1, g2 = _randn(5, 3, seed=0), _randn(5, 3, seed=1), _randn(5, 3, seed=2)
    param = nn.Parameter(w0.clone())
    opt = Shampoo([param], lr=0.1, epsilon=1e-4, precondition_frequency=1, **PLAIN)
    param.grad = g1.clone()
    opt.step()
    w1 = param.detach().clone()
    stale = dense_root(g1 @ g1.T, 1e-4) @ g2 @ dense_root(g1.T @ g1, 1e-4)
    _failing_eigh(monkeypatch, lambda m: True)
    param.grad = g2.clone()
    opt.step()
    assert opt.last_step_info["eigh_retries"] == 2.0
    assert opt.last_step_info["eigh_fallbacks"] == 2.0
    torch.testing.assert_close(param.detach(), w1 - 0.1 * stale, **TOL)
    # With no previous roots the identity stands in: an SGD step.
    (after,), fresh = _run(nn.Parameter(w0.clone()), [g1], lr=0.1, **PLAIN)
    assert fresh.last_step_info["eigh_fallbacks"] == 2.0
    torch.testing.assert_close(after, w0 - 0.1 * g1, **TOL)


def test_non_finite_direction_is_not_applied(monkeypatch: pytest.MonkeyPatch) -> None:
    def overflow(self: BlockBatch, search: torch.Tensor, graft: torch.Tensor | None):
        return torch.full_like(search, float("inf"))

    monkeypatch.setattr(BlockBatch, "directions", overflow)
    w0, b0 = _randn(5, 3, seed=0), _randn(5, seed=1)
    weight, bias = nn.Parameter(w0.clone()), nn.Parameter(b0.clone())
    opt = Shampoo([weight, bias], lr=0.1, start_preconditioning_step=1)
    weight.grad, bias.grad = _randn(5, 3, seed=2), _randn(5, seed=3)
    opt.step()
    assert opt.last_step_info["skipped_params"] == 1.0
    assert torch.equal(weight.detach(), w0)
    assert not torch.equal(bias.detach(), b0)  # the bias takes its Adam step


# ----------------------------------------------------------------- 7. bad input


BAD = [
    ({"lr": -1.0}, "lr must be a finite number >= 0, got -1.0"),
    ({"lr": float("nan")}, "lr must be a finite number >= 0, got nan"),
    ({"epsilon": 0.0}, "epsilon must be a finite number > 0, got 0.0"),
    ({"betas": (1.0, 1.0)}, "betas[0] (beta1) must be in [0, 1), got 1.0"),
    ({"betas": (0.9, 0.0)}, "betas[1] (beta2) must be in (0, 1], got 0.0"),
    ({"betas": (0.9, 1.5)}, "betas[1] (beta2) must be in (0, 1], got 1.5"),
    ({"betas": 0.9}, "betas must be a pair (beta1, beta2), got 0.9"),
    ({"weight_decay": -0.1}, "weight_decay must be a number >= 0, got -0.1"),
    ({"precondition_frequency": 0}, "precondition_frequency must be an integer >= 1, got 0"),
    ({"precondition_frequency": 2.5}, "precondition_frequency must be an integer >= 1, got 2.5"),
    (
        {"start_preconditioning_step": 0},
        "start_preconditioning_step must be an integer >= 1, got 0",
    ),
    ({"max_preconditioner_dim": 0}, "max_preconditioner_dim must be an integer >= 1, got 0"),
    (
        {"grafting": "adamw"},
        "grafting must be one of 'adam', 'adagrad', 'sgd', 'none', got 'adamw'",
    ),
    ({"grafting_beta2": 1.0}, "grafting_beta2 must be in [0, 1), got 1.0"),
    ({"grafting_epsilon": 0}, "grafting_epsilon must be a finite number > 0, got 0"),
]


@pytest.mark.parametrize(("kw", "message"), BAD)
def test_bad_arguments_name_the_argument_and_range(kw: dict, message: str) -> None:
    with pytest.raises(ValueError) as err:
        Shampoo([nn.Parameter(torch.zeros(2, 2))], **kw)
    assert str(err.value) == message


def test_bad_group_and_module_arguments() -> None:
    with pytest.raises(ValueError, match=r"^lr must be a finite number >= 0, got -2\.0$"):
        Shampoo([{"params": [nn.Parameter(torch.zeros(2))], "lr": -2.0}])
    opt = Shampoo([nn.Parameter(torch.zeros(2))])
    with pytest.raises(ValueError, match=r"^grafting must be one of"):
        opt.add_param_group({"params": [nn.Parameter(torch.zeros(2))], "grafting": "lamb"})
    with pytest.raises(TypeError, match=r"params must be .*model\.parameters\(\).*Linear"):
        Shampoo(nn.Linear(2, 2))  # type: ignore[arg-type]


# ----------------------------------------------------------------- 8. convolutions and biases


class _CNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.head = nn.Conv2d(1, 3, 3), nn.Linear(3 * 4 * 4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)).flatten(1))


def _cnn(dtype: torch.dtype) -> _CNN:
    torch.manual_seed(0)
    return _CNN().to(dtype)


def _cnn_loss(model: _CNN) -> torch.Tensor:
    dtype = model.conv.weight.dtype
    x, y = _randn(8, 1, 6, 6, seed=1, dtype=dtype), _randn(8, 2, seed=2, dtype=dtype)
    return F.mse_loss(model(x), y)


def test_conv_weight_is_preconditioned_as_an_out_by_in_kh_kw_matrix() -> None:
    model = _cnn(DT)
    w0, b0 = model.conv.weight.detach().clone(), model.conv.bias.detach().clone()
    opt = Shampoo(model.parameters(), lr=0.1, epsilon=1e-4, **PLAIN)
    _cnn_loss(model).backward()
    g, gb = model.conv.weight.grad.clone(), model.conv.bias.grad.clone()
    opt.step()
    state = opt.state[model.conv.weight]
    assert state["L"][0].shape == (3, 3) and state["R"][0].shape == (9, 9)
    g2 = g.reshape(3, 9)
    step = dense_root(g2 @ g2.T, 1e-4) @ g2 @ dense_root(g2.T @ g2, 1e-4)
    torch.testing.assert_close(model.conv.weight.detach(), w0 - 0.1 * step.view_as(w0), **TOL)
    assert "L" not in opt.state[model.conv.bias]  # 1-D: the grafting rule, here plain SGD
    torch.testing.assert_close(model.conv.bias.detach(), b0 - 0.1 * gb, **TOL)


def test_small_cnn_trains_on_a_fixed_batch() -> None:
    model = _cnn(torch.float32)
    opt = Shampoo(
        model.parameters(), lr=1e-2, start_preconditioning_step=2, precondition_frequency=2
    )
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = _cnn_loss(model)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    info = opt.last_step_info
    assert info["preconditioned_params"] == 2.0  # conv and head weights; biases take Adam
    assert info["skipped_params"] == info["eigh_fallbacks"] == info["eigh_retries"] == 0.0
    assert losses[-1] < 0.6 * losses[0]


def test_scalar_and_empty_parameters_take_the_grafting_rule() -> None:
    scalar, empty = nn.Parameter(torch.tensor(0.5, dtype=DT)), nn.Parameter(torch.zeros(0, 3))
    twin = nn.Parameter(torch.tensor(0.5, dtype=DT))
    opt = Shampoo([scalar, empty], lr=0.1, start_preconditioning_step=1)
    ref = torch.optim.Adam([twin], lr=0.1, betas=(0.9, 0.999), eps=1e-8, foreach=False)
    for g in (0.3, -1.2, 0.7):
        scalar.grad, twin.grad = torch.tensor(g, dtype=DT), torch.tensor(g, dtype=DT)
        empty.grad = torch.zeros(0, 3)
        opt.step()
        ref.step()
        torch.testing.assert_close(scalar.detach(), twin.detach(), **TOL)
    assert "L" not in opt.state[empty] and opt.last_step_info["preconditioned_params"] == 0.0
