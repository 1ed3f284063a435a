"""K-FAC steps against dense Kronecker solves, float64, factors built by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from kfac_reference import DT, dense_solve, outer_mean, vec, wbar, with_ones
from torch import nn

from rl_ig.optim import KFAC

TOL = {"rtol": 1e-10, "atol": 1e-12}


def _randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, dtype=DT, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("bias", [True, False])
def test_linear_step_is_dense_kronecker_solve(bias: bool) -> None:
    torch.manual_seed(0)
    layer = nn.Linear(3, 2, bias=bias).to(DT)
    x, target = _randn(5, 3, seed=1), _randn(5, 2, seed=2)
    opt = KFAC(layer, lr=0.3, damping=0.05, factor_decay=0.9)
    y = layer(x)
    (0.5 * (y - target).pow(2).sum(1).mean()).backward()
    # ℓ_i = ½‖y_i − t_i‖², so the per-example output gradient is g_i = y_i − t_i.
    a_hand = outer_mean(with_ones(x) if bias else x)
    g_hand = outer_mean((y - target).detach())
    before, grad = wbar(layer), wbar(layer, grad=True)
    opt.step()
    a, g = opt.factors()["model"]
    torch.testing.assert_close(a, a_hand, **TOL)
    torch.testing.assert_close(g, g_hand, **TOL)
    expected = -0.3 * dense_solve(a_hand, g_hand, grad, 0.05)
    torch.testing.assert_close(wbar(layer) - before, expected, **TOL)


def _conv_patches(x: torch.Tensor, conv: nn.Conv2d, pads: tuple[int, ...]) -> torch.Tensor:
    """Input patches ``(B, positions, C·kh·kw)`` by explicit loops over output positions."""
    xp = F.pad(x, pads)
    (kh, kw), (sh, sw), (dh, dw) = conv.kernel_size, conv.stride, conv.dilation
    ho = (xp.shape[2] - dh * (kh - 1) - 1) // sh + 1
    wo = (xp.shape[3] - dw * (kw - 1) - 1) // sw + 1
    rows = [
        xp[b, :, i * sh : i * sh + dh * (kh - 1) + 1 : dh, j * sw : j * sw + dw * (kw - 1) + 1 : dw]
        for b in range(x.shape[0])
        for i in range(ho)
        for j in range(wo)
    ]
    return torch.stack([r.reshape(-1) for r in rows]).reshape(x.shape[0], ho * wo, -1)


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize(
    "kwargs,pads",
    [
        ({}, (0, 0, 0, 0)),
        ({"stride": 2, "padding": 1}, (1, 1, 1, 1)),
        ({"padding": "same"}, (0, 1, 0, 1)),  # kernel 2: the odd pad goes right/bottom
        ({"padding": 1, "dilation": 2, "bias": False}, (1, 1, 1, 1)),
    ],
)
def test_conv2d_step_is_dense_kronecker_solve(kwargs: dict, pads: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, kernel_size=2, **kwargs).to(DT)
    x = _randn(3, 2, 4, 4, seed=3)
    opt = KFAC(conv, lr=0.2, damping=0.03)
    y = conv(x)
    target = _randn(*y.shape, seed=4)
    (0.5 * (y - target).pow(2).sum((1, 2, 3)).mean()).backward()
    patches = _conv_patches(x, conv, pads)  # (B, T, C·kh·kw)
    rows = patches.reshape(-1, 8)
    a_rows = with_ones(rows) if conv.bias is not None else rows
    # The hand patches must reproduce the convolution itself, padding convention included.
    y_rows = y.detach().flatten(2).transpose(1, 2).reshape(-1, 3)
    torch.testing.assert_close(a_rows @ wbar(conv).T, y_rows, **TOL)
    # KFC: A = mean over batch and positions; G = (1/B) Σ_i Σ_t g_it g_itᵀ, g_it = y_it − t_it.
    a_hand = outer_mean(a_rows)
    g_rows = (y - target).detach().flatten(2).transpose(1, 2).reshape(-1, 3)
    g_hand = outer_mean(g_rows) * patches.shape[1]
    before, grad = wbar(conv), wbar(conv, grad=True)
    opt.step()
    a, g = opt.factors()["model"]
    torch.testing.assert_close(a, a_hand, **TOL)
    torch.testing.assert_close(g, g_hand, **TOL)
    torch.testing.assert_close(wbar(conv) - before, -0.2 * dense_solve(a_hand, g_hand, grad, 0.03))


def _two_layer_reference(model: nn.Sequential, x: torch.Tensor, target: torch.Tensor) -> list:
    """``[(A1, G1), (A2, G2)]`` from a functional re-run of the model (no hooks involved)."""
    l1, l2 = model[0], model[2]
    h1 = F.linear(x, l1.weight.detach(), l1.bias.detach()).requires_grad_()
    z = torch.tanh(h1)
    y = F.linear(z, l2.weight.detach(), l2.bias.detach())
    per_example = 0.5 * (y - target).pow(2).sum(1)
    g1, g2 = torch.autograd.grad(per_example.sum(), [h1, y])
    a1, a2 = outer_mean(with_ones(x)), outer_mean(with_ones(z.detach()))
    return [(a1, outer_mean(g1)), (a2, outer_mean(g2))]


def test_two_layers_each_block_is_its_own_dense_solve() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).to(DT)
    x, target = _randn(6, 3, seed=5), _randn(6, 2, seed=6)
    opt = KFAC(model, lr=0.5, damping=0.02)
    (0.5 * (model(x) - target).pow(2).sum(1).mean()).backward()
    reference = _two_layer_reference(model, x, target)
    layers = [model[0], model[2]]
    before = [wbar(m) for m in layers]
    grads = [wbar(m, grad=True) for m in layers]
    opt.step()
    for m, old, grad, (a_hand, g_hand), name in zip(layers, before, grads, reference, "02"):
        a, g = opt.factors()[name]
        torch.testing.assert_close(a, a_hand, **TOL)
        torch.testing.assert_close(g, g_hand, **TOL)
        torch.testing.assert_close(wbar(m) - old, -0.5 * dense_solve(a_hand, g_hand, grad, 0.02))


def factored_step(
    a: torch.Tensor, g: torch.Tensor, grad: torch.Tensor, damping: float, lr: float
) -> torch.Tensor:
    """``-lr·[(A + π√λI)⁻¹ ⊗ (G + √λ/π I)⁻¹] vec(grad)`` of a 3-in, 2-out layer, densely."""
    pi, root = math.sqrt((a.trace() / 4) / (g.trace() / 2)), math.sqrt(damping)
    left = torch.linalg.inv(a + pi * root * torch.eye(4, dtype=DT))
    right = torch.linalg.inv(g + root / pi * torch.eye(2, dtype=DT))
    return -lr * (torch.kron(left, right) @ vec(grad)).reshape(4, 2).T


def test_factored_damping_is_its_dense_formula() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(3, 2).to(DT)
    x, target = _randn(7, 3, seed=7), _randn(7, 2, seed=8)
    opt = KFAC(layer, lr=0.4, damping=0.1, damping_mode="factored")
    y = layer(x)
    (0.5 * (y - target).pow(2).sum(1).mean()).backward()
    a, g = outer_mean(with_ones(x)), outer_mean((y - target).detach())
    before, grad = wbar(layer), wbar(layer, grad=True)
    opt.step()
    expected = factored_step(a, g, grad, 0.1, 0.4)
    torch.testing.assert_close(wbar(layer) - before, expected, **TOL)
    # and it differs from the exact damping, so the test tells the modes apart
    assert not torch.allclose(expected, -0.4 * dense_solve(a, g, grad, 0.1), rtol=1e-3)


def test_factored_inverses_follow_new_factors_and_a_new_damping() -> None:
    """The cached factored-damping inverses are rebuilt when the damping changes (as adaptive
    damping does; step 1) and when the eigenbases are refreshed (step 2)."""
    torch.manual_seed(0)
    layer = nn.Linear(3, 2).to(DT)
    opt = KFAC(
        layer, lr=0.4, damping=0.1, damping_mode="factored", factor_decay=0.0, inverse_update_freq=2
    )
    basis: tuple[torch.Tensor, torch.Tensor] | None = None
    for t, (seed, damping) in enumerate(((7, 0.1), (9, 0.3), (11, 0.3))):
        opt.param_groups[0]["damping"] = damping
        x, target = _randn(7, 3, seed=seed), _randn(7, 2, seed=seed + 1)
        opt.zero_grad()
        y = layer(x)
        (0.5 * (y - target).pow(2).sum(1).mean()).backward()
        if t % 2 == 0:  # eigenbases refreshed from this batch's factors
            basis = outer_mean(with_ones(x)), outer_mean((y - target).detach())
        assert basis is not None
        before, grad = wbar(layer), wbar(layer, grad=True)
        opt.step()
        expected = factored_step(*basis, grad, damping, 0.4)
        torch.testing.assert_close(wbar(layer) - before, expected, **TOL)


class _GaussianPolicy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.mean = nn.Linear(3, 2)
        self.log_std = nn.Parameter(torch.tensor([0.1, -0.2]))

    def forward(self, obs: torch.Tensor) -> torch.distributions.Normal:
        return torch.distributions.Normal(self.mean(obs), self.log_std.exp())


def test_explicit_capture_uses_the_sampled_backward_only() -> None:
    torch.manual_seed(0)
    policy = _GaussianPolicy().to(DT)
    obs, actions, adv = _randn(6, 3, seed=9), _randn(6, 2, seed=10), _randn(6, seed=11)
    opt = KFAC(policy, lr=0.1, damping=0.01, capture="explicit", factor_decay=0.5)
    with opt.capture_factors():
        dist = policy(obs)
        sampled = dist.sample()
        (-dist.log_prob(sampled).sum(-1).mean()).backward(retain_graph=True)
    opt.zero_grad()
    (-(dist.log_prob(actions).sum(-1) * adv).mean()).backward()
    mu, var = dist.mean.detach(), dist.variance.detach()
    g_sampled = outer_mean(-(sampled - mu) / var)  # ∂(−log π(a|μ))/∂μ for the sampled a
    g_real = outer_mean(-adv[:, None] * (actions - mu) / var)
    before, grad = wbar(policy.mean), wbar(policy.mean, grad=True)
    opt.step()
    a, g = opt.factors()["mean"]
    torch.testing.assert_close(a, outer_mean(with_ones(obs)), **TOL)
    torch.testing.assert_close(g, g_sampled, **TOL)
    assert not torch.allclose(g, g_real, rtol=1e-2)
    torch.testing.assert_close(wbar(policy.mean) - before, -0.1 * dense_solve(a, g, grad, 0.01))
    # Forward and backward outside the block, or forward inside and backward outside: nothing.
    opt.zero_grad()
    policy(obs).log_prob(actions).sum().backward()
    with opt.capture_factors():
        dist = policy(obs)
    dist.log_prob(actions).sum().backward()
    opt.step()
    assert torch.equal(opt.factors()["mean"][1], g)


def test_differentiating_the_captured_outputs_records_the_same_factors() -> None:
    """The sampled backward taken to the layers' outputs gives the factors of one taken to
    the parameters, and computes no parameter gradient."""
    x, y = _randn(7, 4, seed=1), _randn(7, 3, seed=2)
    factors = []
    for to_outputs in (False, True):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).to(DT)
        opt = KFAC(model, lr=0.1, damping=0.01, capture="explicit")
        with opt.capture_factors():
            out = model(x)
            fisher_loss = 0.5 * ((out - (out.detach() + _randn(7, 3, seed=3))) ** 2).sum(1).mean()
            outputs = opt.captured_outputs()
            assert len(outputs) == 2 and outputs[1] is out
            inputs = outputs if to_outputs else list(model.parameters())
            torch.autograd.grad(fisher_loss, inputs, retain_graph=True)
        assert opt.captured_outputs() == []  # dropped when the block exits
        assert all(p.grad is None for p in model.parameters())
        (0.5 * ((out - y) ** 2).sum(1).mean()).backward()
        opt.step()
        factors.append(opt.factors())
    for name in factors[0]:
        for a, b in zip(factors[0][name], factors[1][name]):
            torch.testing.assert_close(a, b, **TOL)


def test_auto_capture_keeps_the_last_forward_backward_pair() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(3, 2).to(DT)
    opt = KFAC(layer, lr=0.1)
    for seed in (12, 13):
        x = _randn(4, 3, seed=seed)
        layer(x).pow(2).sum(1).mean().backward()
    with torch.no_grad():
        layer(_randn(4, 3, seed=14))  # no grad: not recorded
    layer.eval()
    layer(_randn(4, 3, seed=15)).sum().backward()  # eval mode: not recorded
    y = F.linear(x, layer.weight, layer.bias).detach()
    opt.step()
    a, g = opt.factors()["model"]
    torch.testing.assert_close(a, outer_mean(with_ones(x)), **TOL)
    torch.testing.assert_close(g, outer_mean(2 * y), **TOL)  # ℓ_i = ‖y_i‖²: g_i = 2 y_i


def test_other_parameters_get_sgd_or_their_diagonal_fisher() -> None:
    obs, actions = _randn(5, 3, seed=16), _randn(5, 2, seed=17)
    moves = []
    for diag in (None, 4.0):
        torch.manual_seed(0)
        policy = _GaussianPolicy().to(DT)
        kwargs = {"diag_fisher": {policy.log_std: diag}} if diag else {}
        opt = KFAC(policy, lr=0.1, weight_decay=0.01, **kwargs)
        assert [g["layer"] for g in opt.param_groups] == ["mean", None]
        (-policy(obs).log_prob(actions).sum(-1).mean()).backward()
        theta, grad = policy.log_std.detach().clone(), policy.log_std.grad.clone()
        opt.step()
        expected = -0.1 * (grad + 0.01 * theta) / (diag or 1.0)
        torch.testing.assert_close(policy.log_std.detach() - theta, expected, **TOL)
        moves.append(policy.log_std.detach() - theta)
    torch.testing.assert_close(moves[1], moves[0] / 4, **TOL)


def test_momentum_is_heavy_ball_on_the_direction() -> None:
    torch.manual_seed(0)
    policy = _GaussianPolicy().to(DT)
    opt = KFAC(policy, lr=0.1, momentum=0.9)
    theta0 = policy.log_std.detach().clone()
    grads = []
    for seed in (18, 19):
        opt.zero_grad()
        (-policy(_randn(5, 3, seed=seed)).log_prob(_randn(5, 2, seed=seed + 50)).mean()).backward()
        grads.append(policy.log_std.grad.clone())
        opt.step()
    expected = theta0 - 0.1 * grads[0] - 0.1 * (0.9 * grads[0] + grads[1])
    torch.testing.assert_close(policy.log_std.detach(), expected, **TOL)


def test_precondition_is_the_step_direction() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).to(DT)
    opt = KFAC(model, lr=0.3, damping=0.02)
    model(_randn(6, 3, seed=20)).pow(2).mean().backward()
    params = [p for group in opt.param_groups for p in group["params"]]
    grads = [p.grad.clone() for p in params]
    before = [p.detach().clone() for p in params]
    opt.step()
    directions = opt.precondition(grads)
    for p, old, d in zip(params, before, directions):
        torch.testing.assert_close(p.detach() - old, -0.3 * d, **TOL)


def test_running_averages_and_stale_eigenbases() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(3, 2).to(DT)
    opt = KFAC(layer, lr=0.2, damping=0.05, factor_decay=0.6, inverse_update_freq=2)
    factors, moves, grads = [], [], []
    for seed in (21, 22, 23):
        opt.zero_grad()
        x, target = _randn(5, 3, seed=seed), _randn(5, 2, seed=seed + 50)
        y = layer(x)
        (0.5 * (y - target).pow(2).sum(1).mean()).backward()
        batch = (outer_mean(with_ones(x)), outer_mean((y - target).detach()))
        previous = factors[-1] if factors else batch
        factors.append(tuple(0.6 * p + 0.4 * b for p, b in zip(previous, batch)))
        before = wbar(layer)
        grads.append(wbar(layer, grad=True))
        opt.step()
        moves.append(wbar(layer) - before)
        for got, want in zip(opt.factors()["model"], factors[-1]):
            torch.testing.assert_close(got, want, **TOL)
    # steps 0 and 2 decompose the current factors; step 1 reuses the eigenbasis of step 0
    for step, used in ((0, 0), (1, 0), (2, 2)):
        expected = -0.2 * dense_solve(*factors[used], grads[step], 0.05)
        torch.testing.assert_close(moves[step], expected, **TOL)
