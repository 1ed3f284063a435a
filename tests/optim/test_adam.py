"""rl_ig.optim.Adam is numerically torch.optim.Adam, and its state_dict is interchangeable."""

from __future__ import annotations

import io

import pytest
import torch

from rl_ig.optim import Adam


def _params(seed: int) -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(seed)
    shapes = [(7, 3), (7,), (2, 7), (2,)]
    return [torch.nn.Parameter(torch.randn(s, generator=gen)) for s in shapes]


def _run(opt_cls, steps: int, **kw) -> tuple[list[torch.Tensor], torch.optim.Optimizer]:
    params = _params(0)
    opt = opt_cls(params, **kw)
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen)
        opt.step()
    return [p.detach().clone() for p in params], opt


@pytest.mark.parametrize(
    "kw",
    [
        {"lr": 1e-2},
        {"lr": 3e-3, "betas": (0.8, 0.99), "eps": 1e-5, "weight_decay": 0.1},
        {"lr": 1e-2, "amsgrad": True},
        {"lr": 1e-2, "maximize": True},
    ],
)
def test_equals_torch_adam_over_many_steps(kw) -> None:
    ours, _ = _run(Adam, 200, **kw)
    fused, _ = _run(torch.optim.Adam, 200, fused=True, **kw)
    plain, _ = _run(torch.optim.Adam, 200, foreach=False, **kw)
    for a, b, c in zip(ours, fused, plain):
        assert torch.equal(a, b)  # the same fused kernel
        torch.testing.assert_close(a, c, rtol=1e-5, atol=1e-6)  # the reference loop


def test_state_dict_round_trip_and_interchange() -> None:
    uninterrupted, _ = _run(Adam, 30, lr=1e-2)
    params = _params(0)
    opt = Adam(params, lr=1e-2)
    gen = torch.Generator().manual_seed(1)
    grads = [[torch.randn(p.shape, generator=gen) for p in params] for _ in range(30)]
    for g in grads[:10]:
        for p, gi in zip(params, g):
            p.grad = gi
        opt.step()
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    restored = torch.optim.Adam(params, lr=1e-2, fused=True)  # torch's class reads it
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    for g in grads[10:]:
        for p, gi in zip(params, g):
            p.grad = gi
        restored.step()
    for a, b in zip(params, uninterrupted):
        assert torch.equal(a.detach(), b)


def test_bad_arguments_name_the_argument() -> None:
    with pytest.raises(ValueError, match="learning rate"):
        Adam(_params(0), lr=-1.0)
    with pytest.raises(ValueError, match="epsilon"):
        Adam(_params(0), eps=-1.0)
    with pytest.raises(ValueError, match="beta"):
        Adam(_params(0), betas=(1.5, 0.9))


def _steps_with_grads(opt: torch.optim.Optimizer, params, grads) -> None:
    for g in grads:
        for p, gi in zip(params, g):
            p.grad = gi
        opt.step()


def test_partial_steps_and_reloaded_state_match_torch() -> None:
    """Steps where some parameter has no gradient, then a reload: the cached kernel lists must
    follow both, or the parameters would drift from torch's."""
    gen = torch.Generator().manual_seed(2)
    shapes = [(7, 3), (7,), (2, 7), (2,)]
    grads = [[torch.randn(s, generator=gen) for s in shapes] for _ in range(12)]
    for g in grads[4:8]:
        g[1] = None  # the bias of the first layer is frozen for a while
    runs = []
    for cls in (Adam, torch.optim.Adam):
        params = _params(0)
        opt = cls(params, lr=1e-2, fused=True)
        _steps_with_grads(opt, params, grads[:6])
        saved = opt.state_dict()
        opt.load_state_dict(
            {
                **saved,
                "state": {
                    k: {n: t.clone() for n, t in v.items()} for k, v in saved["state"].items()
                },
            }
        )
        _steps_with_grads(opt, params, grads[6:])
        runs.append([p.detach().clone() for p in params])
    for a, b in zip(*runs):
        assert torch.equal(a, b)


def test_step_hooks_run_once_and_the_profiler_sees_the_step() -> None:
    params = _params(0)
    opt = Adam(params, lr=1e-2)
    calls: list[str] = []
    opt.register_step_pre_hook(lambda *_: calls.append("pre"))
    opt.register_step_post_hook(lambda *_: calls.append("post"))
    torch.optim.Adam(_params(1), fused=True)  # torch's own class patched too: no double hooks
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()
    assert calls == ["pre", "post"]
    with torch.profiler.profile() as prof:
        opt.step()
    assert "Optimizer.step#Adam.step" in {e.key for e in prof.key_averages()}
