"""Log-probabilities and entropies of the policy heads, with their derivatives in closed form.

The actor-critic updates (PPO, A2C) differentiate a loss ``ℓ(log π(a|s), H(s))`` per sample.
Writing ``∂log π/∂(head output)`` and ``∂H/∂(head output)`` out turns that into the output error
of the network, which :mod:`fast_mlp` back-propagates without building a graph. The formulas
are the same functions ``torch.distributions`` computes (``Independent(Normal)`` and
``Categorical``); the tests compare both, and their gradients, in float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


@dataclass(frozen=True)
class HeadOutputs:
    """What a head evaluates on a minibatch.

    Attributes:
        log_prob: ``(B,)`` log-probability of the taken actions.
        entropy: ``(B,)`` entropy of the action distribution at each state.
    """

    log_prob: torch.Tensor
    entropy: torch.Tensor


@dataclass(frozen=True)
class HeadGrads:
    """Derivatives of a loss with respect to what parameterises the head.

    Attributes:
        d_out: ``(B, out)`` derivative with respect to the network's output.
        d_log_std: ``(act_dim,)`` derivative with respect to a Gaussian's ``log_std``, or None.
    """

    d_out: torch.Tensor
    d_log_std: torch.Tensor | None


def gaussian(mean: torch.Tensor, log_std: torch.Tensor, actions: torch.Tensor) -> HeadOutputs:
    """``N(mean, diag(exp(2 log_std)))``: ``log π = −Σⱼ [zⱼ²/2 + log σⱼ + ½ log 2π]``.

    Args:
        mean: ``(B, d)``; log_std: ``(d,)``; actions: ``(B, d)``.
    """
    z = (actions - mean) * torch.exp(-log_std)
    const = log_std.sum() + _HALF_LOG_2PI * log_std.numel()
    log_prob = -0.5 * z.square().sum(dim=-1) - const
    entropy = (0.5 * log_std.numel() + const).expand(mean.shape[0])
    return HeadOutputs(log_prob, entropy)


def gaussian_grads(
    mean: torch.Tensor,
    log_std: torch.Tensor,
    actions: torch.Tensor,
    d_log_prob: torch.Tensor,
    d_entropy: float,
) -> HeadGrads:
    """Chain rule through :func:`gaussian` for ``ℓ = Σᵢ d_log_prob_i·log πᵢ + d_entropy·Σᵢ Hᵢ``.

    ``∂log π/∂μ = (a − μ)/σ²``, ``∂log π/∂log σ = z² − 1``, ``∂H/∂log σ = 1`` per dimension.

    Args:
        d_log_prob: ``(B,)`` derivative of the loss with respect to each ``log πᵢ``.
        d_entropy: derivative of the loss with respect to each ``Hᵢ`` (the same for all i).
    """
    inv_std = torch.exp(-log_std)
    z = (actions - mean) * inv_std
    w = d_log_prob.unsqueeze(-1)
    d_out = w * z * inv_std
    d_log_std = (w * (z.square() - 1.0)).sum(dim=0) + d_entropy * mean.shape[0]
    return HeadGrads(d_out, d_log_std)


def categorical(logits: torch.Tensor, actions: torch.Tensor) -> HeadOutputs:
    """``softmax(logits)``: ``log π(a) = logits_a − logsumexp(logits)``, ``H = −Σ p log p``.

    Args:
        logits: ``(B, n)``; actions: ``(B,)`` integer actions.
    """
    log_p = logits - logits.logsumexp(dim=-1, keepdim=True)
    log_prob = log_p.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
    entropy = -(log_p.exp() * log_p).sum(dim=-1)
    return HeadOutputs(log_prob, entropy)


def categorical_grads(
    logits: torch.Tensor, actions: torch.Tensor, d_log_prob: torch.Tensor, d_entropy: float
) -> HeadGrads:
    """Chain rule through :func:`categorical`.

    ``∂log π(a)/∂logits = onehot(a) − p`` and ``∂H/∂logits = −p ⊙ (log p + H)``.
    """
    log_p = logits - logits.logsumexp(dim=-1, keepdim=True)
    p = log_p.exp()
    entropy = -(p * log_p).sum(dim=-1, keepdim=True)
    onehot = torch.zeros_like(logits).scatter_(-1, actions.long().unsqueeze(-1), 1.0)
    d_out = d_log_prob.unsqueeze(-1) * (onehot - p) - d_entropy * p * (log_p + entropy)
    return HeadGrads(d_out, None)
