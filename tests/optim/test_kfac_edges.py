"""K-FAC at the edges: trust region, checkpoints, broken factors, bad input, autocast, damping."""

from __future__ import annotations

import copy
import io
import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from kfac_reference import DT, dense_solve, outer_mean, vec, wbar, with_ones
from torch import nn

import rl_ig.optim.kfac as kfac_module
import rl_ig.optim.kfac_distributed as kfac_distributed
from rl_ig.optim import KFAC
from rl_ig.optim.kronecker import running_average

TOL = {"rtol": 1e-10, "atol": 1e-12}


def _randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, dtype=DT, generator=torch.Generator().manual_seed(seed))


class _Net(nn.Module):
    """Two Linear layers and a bare parameter (an "other" parameter)."""

    def __init__(self) -> None:
        super().__init__()
        self.l1, self.l2 = nn.Linear(3, 5), nn.Linear(5, 2)
        self.log_std = nn.Parameter(torch.tensor([0.1, -0.3]))

    def forward(self, x: torch.Tensor) -> torch.distributions.Normal:
        return torch.distributions.Normal(self.l2(torch.tanh(self.l1(x))), self.log_std.exp())


def _net(seed: int = 0) -> _Net:
    torch.manual_seed(seed)
    return _Net().to(DT)


def _backward(net: _Net, seed: int) -> None:
    x, actions = _randn(6, 3, seed=seed), _randn(6, 2, seed=seed + 1000)
    (-net(x).log_prob(actions).sum(-1).mean()).backward()


def _params(net: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in net.parameters()]


# ----------------------------------------------------------------- KL trust region


def test_kl_clip_scales_the_update_and_bounds_the_predicted_kl() -> None:
    nets = [_net(), _net(), _net()]
    opts = [KFAC(nets[0], lr=0.5, damping=0.01)]
    opts += [KFAC(n, lr=0.5, damping=0.01, kl_clip=c) for n, c in ((nets[1], 1e-4), (nets[2], 1e3))]
    before = _params(nets[0])
    for net, opt in zip(nets, opts):
        _backward(net, seed=1)
        opt.step()
    grads = [p.grad for p in nets[0].parameters()]
    moves = [[p.detach() - b for p, b in zip(net.parameters(), before)] for net in nets]
    # Δ = −move/lr over all parameters, other parameters with the identity metric.
    dot = sum(float((-m / 0.5 * g).sum()) for m, g in zip(moves[0], grads))
    free = opts[0].last_step_info
    assert free["kl_clip_scale"] == 1.0
    assert free["predicted_kl"] == pytest.approx(0.5 * 0.5**2 * dot, rel=1e-12)
    clipped = opts[1].last_step_info
    nu = math.sqrt(1e-4 / free["predicted_kl"])
    assert clipped["kl_clip_scale"] == pytest.approx(nu, rel=1e-12) and nu < 1
    assert clipped["predicted_kl"] <= 1e-4
    assert clipped["predicted_kl"] == pytest.approx(1e-4, rel=1e-12)
    for free_move, clipped_move in zip(moves[0], moves[1]):
        torch.testing.assert_close(clipped_move, nu * free_move, **TOL)
    assert opts[2].last_step_info["kl_clip_scale"] == 1.0  # a loose clip does not bind
    for free_move, loose_move in zip(moves[0], moves[2]):
        assert torch.equal(free_move, loose_move)


# ----------------------------------------------------------------- checkpoints


def _make(seed: int, damping_mode: str = "exact") -> tuple[_Net, KFAC]:
    net = _net(seed)
    opt = KFAC(
        net,
        lr=0.2,
        damping=0.02,
        momentum=0.9,
        weight_decay=1e-3,
        factor_decay=0.7,
        factor_update_freq=2,
        inverse_update_freq=3,
        kl_clip=0.05,
        damping_mode=damping_mode,
    )
    return net, opt


def _train(net: _Net, opt: KFAC, steps: range) -> None:
    for step in steps:
        opt.zero_grad()
        _backward(net, seed=100 + step)
        opt.step()


@pytest.mark.parametrize("damping_mode", ["exact", "factored"])
def test_state_dict_round_trip_continues_bit_identically(damping_mode: str) -> None:
    net, opt = _make(0, damping_mode)
    _train(net, opt, range(7))
    half, half_opt = _make(0, damping_mode)
    _train(half, half_opt, range(4))
    buffer = io.BytesIO()
    torch.save({"model": half.state_dict(), "opt": half_opt.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    resumed, resumed_opt = _make(seed=1, damping_mode=damping_mode)
    resumed.load_state_dict(saved["model"])
    resumed_opt.load_state_dict(saved["opt"])
    _train(resumed, resumed_opt, range(4, 7))
    for p, q in zip(net.parameters(), resumed.parameters()):
        assert torch.equal(p, q)
    # Without the optimizer state (momentum, factors, counters) the run would differ.
    fresh, fresh_opt = _make(seed=1, damping_mode=damping_mode)
    fresh.load_state_dict(saved["model"])
    _train(fresh, fresh_opt, range(4, 7))
    assert not torch.equal(next(fresh.parameters()), next(net.parameters()))


def test_load_state_dict_keeps_float32_factors_of_a_bfloat16_model() -> None:
    torch.manual_seed(0)
    model = nn.Linear(3, 2).to(torch.bfloat16)
    opt = KFAC(model, lr=0.1)
    model(_randn(4, 3, seed=2).to(torch.bfloat16)).float().pow(2).mean().backward()
    opt.step()
    twin = nn.Linear(3, 2).to(torch.bfloat16)
    twin_opt = KFAC(twin, lr=0.1)
    twin_opt.load_state_dict(opt.state_dict())
    for key in ("A", "G", "QA", "dA", "QG", "dG"):
        saved, loaded = opt.state[model.weight][key], twin_opt.state[twin.weight][key]
        assert saved.dtype == loaded.dtype == torch.float32 and torch.equal(saved, loaded)


# ----------------------------------------------------------------- broken factors


def _two_layer(seed: int = 0, **kwargs: float | str) -> tuple[nn.Sequential, KFAC]:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).to(DT)
    return model, KFAC(model, lr=0.1, damping=0.05, **kwargs)


def _mse_backward(model: nn.Module, seed: int, dtype: torch.dtype = DT) -> None:
    x, target = _randn(5, 3, seed=seed).to(dtype), _randn(5, 2, seed=seed + 1).to(dtype)
    (0.5 * (model(x) - target).pow(2).sum(1).mean()).backward()


def test_nan_and_singular_factors_keep_parameters_finite() -> None:
    model, opt = _two_layer(factor_update_freq=100, inverse_update_freq=1)
    _mse_backward(model, seed=1)
    opt.step()  # factors from this batch, then never refreshed (factor_update_freq=100)
    old = opt.factors()
    opt.state[model[0].weight]["A"] = torch.full((4, 4), math.nan, dtype=DT)
    opt.state[model[2].weight]["G"] = torch.zeros(2, 2, dtype=DT)
    opt.zero_grad()
    _mse_backward(model, seed=2)
    before, grads = [wbar(model[i]) for i in (0, 2)], [wbar(model[i], grad=True) for i in (0, 2)]
    opt.step()
    info = opt.last_step_info
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())
    assert info["eigh_fallbacks"] == 1 and info["skipped_layers"] == 0
    # the NaN factor keeps its previous eigenbasis; G = 0 gives (A ⊗ 0 + λI)⁻¹ = I/λ
    expected0 = -0.1 * dense_solve(*old["0"], grads[0], 0.05)
    torch.testing.assert_close(wbar(model[0]) - before[0], expected0, **TOL)
    torch.testing.assert_close(wbar(model[2]) - before[1], -0.1 * grads[1] / 0.05, **TOL)


def test_non_finite_direction_skips_only_that_layer() -> None:
    (model, opt), (twin, twin_opt) = _two_layer(), _two_layer()
    for m in (model, twin):
        _mse_backward(m, seed=3)
    with torch.no_grad():
        model[0].weight.grad[0, 0] = math.inf
    before = _params(model)
    opt.step()
    twin_opt.step()
    assert opt.last_step_info["skipped_layers"] == 1
    assert torch.equal(model[0].weight, before[0]) and torch.equal(model[0].bias, before[1])
    assert torch.equal(model[2].weight, twin[2].weight) and torch.equal(model[2].bias, twin[2].bias)


def _broken_eigh(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    raise torch.linalg.LinAlgError("does not converge")


def _broken_cholesky(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return matrix, torch.tensor(1, dtype=torch.int32)  # info > 0: not positive definite


@pytest.mark.parametrize(
    "damping_mode,name,broken",
    [("exact", "eigh", _broken_eigh), ("factored", "cholesky_ex", _broken_cholesky)],
)
def test_failing_decompositions_skip_layers_without_a_metric(
    monkeypatch: pytest.MonkeyPatch, damping_mode: str, name: str, broken: Callable
) -> None:
    """No eigenbasis (exact damping) or no inverses (factored) yet: the layer is not updated."""
    model, opt = _two_layer(damping_mode=damping_mode)
    _mse_backward(model, seed=4)
    before = _params(model)
    monkeypatch.setattr(torch.linalg, name, broken)
    opt.step()
    info = opt.last_step_info
    assert (info["eigh_retries"], info["eigh_fallbacks"], info["skipped_layers"]) == (4, 4, 2)
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))


def _step_failing_once_in_float32(
    monkeypatch: pytest.MonkeyPatch, name: str, broken: Callable, damping_mode: str
) -> tuple[KFAC, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One float32 step whose first ``torch.linalg.<name>`` call fails (the factor ``A``);
    returns ``(opt, A, G, grad, update)`` in float64."""
    original, calls = getattr(torch.linalg, name), []

    def fails_once(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        calls.append(matrix.dtype)
        if len(calls) == 1 and matrix.dtype == torch.float32:
            return broken(matrix)
        return original(matrix)

    torch.manual_seed(0)
    layer = nn.Linear(3, 2)
    opt = KFAC(layer, lr=0.1, damping=0.05, damping_mode=damping_mode)
    x, target = _randn(6, 3, seed=5).float(), _randn(6, 2, seed=6).float()
    y = layer(x)
    (0.5 * (y - target).pow(2).sum(1).mean()).backward()
    before, grad = wbar(layer).double(), wbar(layer, grad=True).double()
    monkeypatch.setattr(torch.linalg, name, fails_once)
    opt.step()
    assert calls[:2] == [torch.float32, torch.float64]  # A first, retried in float64
    assert opt.last_step_info["eigh_retries"] == 1
    a, g = outer_mean(with_ones(x.double())), outer_mean((y - target).detach().double())
    return opt, a, g, grad, wbar(layer).double() - before


def test_float32_eigh_failure_is_retried_in_float64(monkeypatch: pytest.MonkeyPatch) -> None:
    opt, a, g, grad, update = _step_failing_once_in_float32(
        monkeypatch, "eigh", _broken_eigh, "exact"
    )
    assert next(iter(opt.state.values()))["QA"].dtype == torch.float32
    # the retry decomposed A + 10·λ·I
    expected = -0.1 * dense_solve(a + 10 * 0.05 * torch.eye(4, dtype=DT), g, grad, 0.05)
    torch.testing.assert_close(update, expected, rtol=1e-4, atol=1e-6)


def test_float32_cholesky_failure_is_retried_in_float64(monkeypatch: pytest.MonkeyPatch) -> None:
    opt, a, g, grad, update = _step_failing_once_in_float32(
        monkeypatch, "cholesky_ex", _broken_cholesky, "factored"
    )
    assert next(iter(opt.state.values()))["iA"].dtype == torch.float32
    # the retry inverted A + (π√λ + 10·λ)·I
    pi, root = math.sqrt((a.trace() / 4) / (g.trace() / 2)), math.sqrt(0.05)
    left = torch.linalg.inv(a + (pi * root + 10 * 0.05) * torch.eye(4, dtype=DT))
    right = torch.linalg.inv(g + root / pi * torch.eye(2, dtype=DT))
    expected = -0.1 * (torch.kron(left, right) @ vec(grad)).reshape(4, 2).T
    torch.testing.assert_close(update, expected, rtol=1e-4, atol=1e-6)


def test_failing_cholesky_keeps_the_last_inverses(monkeypatch: pytest.MonkeyPatch) -> None:
    """Factored damping: layers whose inverses cannot be rebuilt (here for a new damping) keep
    the previous ones, and the failures are counted."""
    (model, opt), (twin, twin_opt) = (_two_layer(damping_mode="factored") for _ in range(2))
    for m, o in ((model, opt), (twin, twin_opt)):
        _mse_backward(m, seed=4)
        o.step()
        m.zero_grad()
        _mse_backward(m, seed=5)
    opt.param_groups[0]["damping"] = opt.param_groups[1]["damping"] = 0.5  # due for new inverses
    monkeypatch.setattr(torch.linalg, "cholesky_ex", _broken_cholesky)
    opt.step()
    twin_opt.step()  # damping unchanged: the inverses of step 0
    info = opt.last_step_info
    assert (info["eigh_retries"], info["eigh_fallbacks"], info["skipped_layers"]) == (4, 4, 0)
    assert opt.state[model[0].weight]["inverse_damping"] == 0.05
    for p, q in zip(model.parameters(), twin.parameters()):
        assert torch.equal(p, q)


def _steps(model: nn.Module, opt: KFAC, seeds: range) -> None:
    for seed in seeds:
        opt.zero_grad()
        _mse_backward(model, seed=seed)
        opt.step()


def test_factored_shifts_are_computed_at_refresh_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Between refreshes the factored step reads the stored shifts (no device-to-host reads)."""
    model, opt = _two_layer(damping_mode="factored", inverse_update_freq=3)
    calls: list[float] = []
    original = kfac_module.factored_shifts

    def counting(a: torch.Tensor, g: torch.Tensor, damping: float) -> tuple[float, float]:
        calls.append(damping)
        return original(a, g, damping)

    monkeypatch.setattr(kfac_module, "factored_shifts", counting)
    _steps(model, opt, range(20, 26))  # refreshes at steps 0 and 3
    assert len(calls) == 2 * 2  # two layers, two refreshes
    shifts = opt.state[model[0].weight]["inverse_shifts"]
    a, g = opt.state[model[0].weight]["RA"], opt.state[model[0].weight]["RG"]
    assert shifts == original(a, g, 0.05)


def test_a_checkpoint_without_stored_shifts_resumes_identically() -> None:
    (model, opt), (twin, twin_opt) = (
        _two_layer(damping_mode="factored", inverse_update_freq=4) for _ in range(2)
    )
    _steps(model, opt, range(30, 32))
    saved = copy.deepcopy(opt.state_dict())
    for layer_state in saved["state"].values():
        layer_state.pop("inverse_shifts", None)
    twin.load_state_dict(model.state_dict())
    twin_opt.load_state_dict(saved)
    _steps(model, opt, range(32, 34))  # no refresh: the metric is rebuilt from RA, RG
    _steps(twin, twin_opt, range(32, 34))
    for p, q in zip(model.parameters(), twin.parameters()):
        assert torch.equal(p, q)


def test_running_average_ignores_non_finite_batches_and_restarts_non_finite_state() -> None:
    old, batch, bad = (
        torch.eye(2, dtype=DT),
        3 * torch.eye(2, dtype=DT),
        torch.full((2, 2), math.nan),
    )
    assert torch.equal(running_average(None, batch, 0.9), batch)
    assert torch.equal(running_average(old, bad, 0.9), old)
    assert torch.equal(running_average(bad, batch, 0.9), batch)
    torch.testing.assert_close(running_average(old, batch, 0.9), 1.2 * torch.eye(2, dtype=DT))


def test_layer_without_factors_gets_sgd_with_a_warning() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(3, 2).to(DT)
    opt = KFAC(layer, lr=0.1, capture="explicit")
    layer(_randn(4, 3, seed=11)).pow(2).mean().backward()  # outside capture_factors()
    before, grad = wbar(layer), wbar(layer, grad=True)
    with pytest.warns(UserWarning, match="'model' has a gradient but no factors yet"):
        opt.step()
    torch.testing.assert_close(wbar(layer) - before, -0.1 * grad, **TOL)


def test_a_deep_copy_of_the_model_records_nothing() -> None:
    (model, opt) = _two_layer(factor_decay=0.5)
    _mse_backward(model, seed=12)
    opt.step()
    factors = opt.factors()
    old_policy = copy.deepcopy(model)
    opt.zero_grad()
    _mse_backward(old_policy, seed=13)
    opt.step()
    for name, (a, g) in opt.factors().items():
        assert torch.equal(a, factors[name][0]) and torch.equal(g, factors[name][1])


# ----------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"lr": -1.0}, "lr must be a finite number >= 0"),
        ({"lr": math.nan}, "lr must be"),
        ({"damping": 0.0}, "damping must be a finite number > 0"),
        ({"momentum": 1.0}, r"momentum must be in \[0, 1\)"),
        ({"weight_decay": -0.1}, "weight_decay must be a number >= 0"),
        ({"factor_decay": 1.0}, r"factor_decay must be in \[0, 1\)"),
        ({"factor_update_freq": 0}, "factor_update_freq must be an integer >= 1"),
        ({"inverse_update_freq": 2.5}, "inverse_update_freq must be an integer >= 1"),
        ({"kl_clip": 0.0}, "kl_clip must be None or a number > 0"),
        ({"damping_mode": "diag"}, "damping_mode must be one of 'exact', 'factored'"),
        ({"adaptive_damping": 1}, "adaptive_damping must be True or False"),
        ({"damping_adaptation_freq": 0}, "damping_adaptation_freq must be an integer >= 1"),
        ({"damping_adaptation_decay": 1.0}, r"damping_adaptation_decay must be in \(0, 1\)"),
        ({"min_damping": 0.0}, "min_damping must be a number > 0"),
        ({"capture": "manual"}, "capture must be one of 'auto', 'explicit'"),
    ],
)
def test_invalid_arguments_name_the_argument(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        KFAC(nn.Linear(2, 2), **kwargs)


def test_invalid_models_and_usage_are_reported() -> None:
    with pytest.raises(ValueError, match="model has no nn.Linear or nn.Conv2d layer"):
        KFAC(nn.Sequential(nn.LayerNorm(3)))
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        KFAC([nn.Parameter(torch.zeros(2))])  # type: ignore[arg-type]
    net = _net()
    with pytest.raises(ValueError, match="diag_fisher keys must be trainable parameters"):
        KFAC(net, diag_fisher={net.l1.weight: 1.0})
    with pytest.raises(ValueError, match="diag_fisher values must be finite numbers > 0"):
        KFAC(net, diag_fisher={net.log_std: 0.0})
    with pytest.raises(ValueError, match=r"capture_factors\(\) needs capture='explicit'"):
        KFAC(net).capture_factors()
    with pytest.raises(ValueError, match=r"adaptive_damping=True needs step\(closure\)"):
        KFAC(net, adaptive_damping=True).step()


def test_frozen_and_grouped_layers_are_left_to_the_base_rule() -> None:
    torch.manual_seed(0)
    frozen, grouped = nn.Linear(4, 4), nn.Conv2d(4, 4, 1, groups=2)
    frozen.requires_grad_(False)
    with pytest.warns(UserWarning, match="groups=2"):
        opt = KFAC(nn.Sequential(frozen, nn.Linear(4, 2), grouped), lr=0.1)
    assert [g["layer"] for g in opt.param_groups] == ["1", None]
    assert opt.param_groups[1]["params"] == [grouped.weight, grouped.bias]


# ----------------------------------------------------------------- autocast and schedulers


def test_factors_stay_float32_under_bfloat16_autocast() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2))
    opt = KFAC(model, lr=0.1)
    x = _randn(16, 3, seed=7).float()
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        y = model(x)
        assert y.dtype == torch.bfloat16
        y.float().pow(2).mean().backward()
    opt.step()
    for name in ("0", "2"):
        a, g = opt.factors()[name]
        assert a.dtype == g.dtype == torch.float32
    assert opt.state[model[0].weight]["QG"].dtype == torch.float32
    torch.testing.assert_close(opt.factors()["0"][0], outer_mean(with_ones(x)))
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())


def test_lambda_lr_scheduler_drives_the_step_size() -> None:
    (model, opt), (twin, twin_opt) = _two_layer(), _two_layer()
    for group in twin_opt.param_groups:
        group["lr"] = 0.05
    torch.optim.lr_scheduler.LambdaLR(opt, lambda epoch: 0.5)
    assert [g["lr"] for g in opt.param_groups] == [0.05, 0.05]
    for m, o in ((model, opt), (twin, twin_opt)):
        _mse_backward(m, seed=8)
        o.step()
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), twin.parameters()))


# ----------------------------------------------------------------- adaptive damping


def _regression(
    lr: float, damping_mode: str = "exact", freq: int = 1, inverse_freq: int = 10
) -> tuple[nn.Linear, KFAC, Callable[[], torch.Tensor], float]:
    """Loss ``mean (y − t)²`` (Hessian 2·A ⊗ 1) with ``G = 1`` captured explicitly, so
    ``ρ = (lr − 1)/(lr/2 − 1)`` up to damping: ``> 3/4`` at lr 0.2, ``< 1/4`` at lr 1."""
    torch.manual_seed(0)
    layer = nn.Linear(3, 1).to(DT)
    x, target = _randn(8, 3, seed=9), _randn(8, 1, seed=10)
    signs = torch.tensor([1.0, -1.0] * 4, dtype=DT)[:, None]
    opt = KFAC(
        layer, lr=lr, damping=1e-4, capture="explicit", adaptive_damping=True,
        damping_mode=damping_mode, damping_adaptation_freq=freq, inverse_update_freq=inverse_freq,
    )  # fmt: skip
    with opt.capture_factors():
        (signs * layer(x)).mean().backward()  # g_i = ±1, so G = mean g_i² = 1
    opt.zero_grad()

    def closure() -> torch.Tensor:
        return (layer(x) - target).pow(2).mean()

    closure().backward()
    return layer, opt, closure, float(closure().detach())


def _damped_fisher(a: torch.Tensor, damping: float, mode: str) -> torch.Tensor:
    """``F̂`` of a layer with ``G = 1``, densely."""
    eye = torch.eye(a.shape[0], dtype=DT)
    if mode == "exact":
        return a + damping * eye
    pi, root = math.sqrt(a.trace() / a.shape[0]), math.sqrt(damping)
    return (a + pi * root * eye) * (1.0 + root / pi)


@pytest.mark.parametrize("damping_mode", ["exact", "factored"])
@pytest.mark.parametrize("lr,direction", [(0.2, "down"), (1.0, "up")])
def test_adaptive_damping_follows_levenberg_marquardt(
    lr: float, direction: str, damping_mode: str
) -> None:
    layer, opt, closure, loss_before = _regression(lr, damping_mode)
    a = outer_mean(with_ones(_randn(8, 3, seed=9)))
    fisher = _damped_fisher(a, 1e-4, damping_mode)
    grad = vec(wbar(layer, grad=True))
    delta = -lr * torch.linalg.solve(fisher, grad)
    model_change = float(grad @ delta + 0.5 * delta @ fisher @ delta)
    assert opt.step(closure) == pytest.approx(loss_before, rel=1e-12)
    rho = (float(closure().detach()) - loss_before) / model_change
    assert opt.last_step_info["rho"] == pytest.approx(rho, rel=1e-9)
    assert (rho > 0.75) if direction == "down" else (rho < 0.25)
    factor = 0.95 if direction == "down" else 1 / 0.95
    assert opt.param_groups[0]["damping"] == pytest.approx(1e-4 * factor, rel=1e-12)
    assert opt.last_step_info["damping"] == opt.param_groups[0]["damping"]


def test_adaptive_damping_respects_min_damping_and_frequency() -> None:
    layer, opt, closure, _ = _regression(0.2, freq=3)
    opt.param_groups[0]["damping"] = 1e-3
    for _ in range(2):  # steps 0 and 1 of 3: no adaptation
        opt.step(closure)
        assert math.isnan(opt.last_step_info["rho"]) and opt.param_groups[0]["damping"] == 1e-3
    opt.param_groups[0]["damping"] = 1e-8
    layer.zero_grad()
    F.mse_loss(layer(_randn(8, 3, seed=9)), _randn(8, 1, seed=10)).backward()
    opt.step(closure)  # step 2 of 3 adapts
    assert opt.last_step_info["rho"] > 0.75
    assert opt.param_groups[0]["damping"] == 1e-8  # ρ > 3/4 would lower it, but min_damping


def test_adapted_damping_arrives_with_a_due_refresh(monkeypatch: pytest.MonkeyPatch) -> None:
    """Adapting on the last step of each period: with inverses every 5 steps and adaptation
    every 5, factored damping inverts at steps 0 and 5 only, each time for A and G."""
    layer, opt, closure, _ = _regression(0.2, damping_mode="factored", freq=5, inverse_freq=5)
    inverted: list[int] = []
    original = kfac_distributed.damped_inverse

    def counting(matrix: torch.Tensor, shift: float, jitter: float) -> tuple:
        inverted.append(opt._steps_done)
        return original(matrix, shift, jitter)

    monkeypatch.setattr(kfac_distributed, "damped_inverse", counting)
    for _ in range(10):
        opt.step(closure)
    assert inverted == [0, 0, 5, 5]
    # It adapted twice (here upwards), at steps 4 and 9.
    assert opt.param_groups[0]["damping"] == pytest.approx(1e-4 / 0.95**2, rel=1e-12)


def test_adaptive_damping_calls_the_closure_only_on_the_steps_that_adapt() -> None:
    layer, opt, closure, _ = _regression(0.2, freq=5)
    calls: list[int] = []

    def counted() -> torch.Tensor:
        calls.append(opt._steps_done)
        return closure()

    returned = []
    for step in range(10):  # adapts at steps 4 and 9
        before = float(closure().detach())
        returned.append(opt.step(counted))
        if step == 4:
            assert returned[-1] == pytest.approx(before, rel=1e-12)
    assert calls == [4, 4, 9, 9]
    assert [r is None for r in returned] == [True] * 4 + [False] + [True] * 4 + [False]
    plain = KFAC(layer, lr=0.2, damping=1e-4)  # without adaptation: once, before the step
    closure().backward()
    before, calls[:] = float(closure().detach()), []
    assert plain.step(counted) == pytest.approx(before, rel=1e-12)
    assert len(calls) == 1
