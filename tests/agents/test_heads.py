"""Closed-form head log-probs, entropies and derivatives against torch.distributions (float64)."""

from __future__ import annotations

import torch
from torch.distributions import Categorical, Independent, Normal

from agents.common import heads


def test_gaussian_matches_torch_and_its_autograd() -> None:
    gen = torch.Generator().manual_seed(0)
    mean = torch.randn(7, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    log_std = torch.randn(3, generator=gen, dtype=torch.float64, requires_grad=True)
    actions = torch.randn(7, 3, generator=gen, dtype=torch.float64)
    w = torch.randn(7, generator=gen, dtype=torch.float64)
    dist = Independent(Normal(mean, log_std.exp()), 1)
    ours = heads.gaussian(mean.detach(), log_std.detach(), actions)
    torch.testing.assert_close(ours.log_prob, dist.log_prob(actions).detach(), rtol=0, atol=1e-12)
    torch.testing.assert_close(ours.entropy, dist.entropy().detach(), rtol=0, atol=1e-12)
    loss = (w * dist.log_prob(actions)).sum() + 0.3 * dist.entropy().sum()
    d_mean, d_log_std = torch.autograd.grad(loss, (mean, log_std))
    grads = heads.gaussian_grads(mean.detach(), log_std.detach(), actions, w, 0.3)
    torch.testing.assert_close(grads.d_out, d_mean, rtol=0, atol=1e-12)
    torch.testing.assert_close(grads.d_log_std, d_log_std, rtol=0, atol=1e-12)


def test_categorical_matches_torch_and_its_autograd() -> None:
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(9, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    actions = torch.randint(0, 4, (9,), generator=gen)
    w = torch.randn(9, generator=gen, dtype=torch.float64)
    dist = Categorical(logits=logits)
    ours = heads.categorical(logits.detach(), actions)
    torch.testing.assert_close(ours.log_prob, dist.log_prob(actions).detach(), rtol=0, atol=1e-12)
    torch.testing.assert_close(ours.entropy, dist.entropy().detach(), rtol=0, atol=1e-12)
    loss = (w * dist.log_prob(actions)).sum() - 0.7 * dist.entropy().sum()
    (d_logits,) = torch.autograd.grad(loss, (logits,))
    grads = heads.categorical_grads(logits.detach(), actions, w, -0.7)
    torch.testing.assert_close(grads.d_out, d_logits, rtol=0, atol=1e-12)
    assert grads.d_log_std is None
