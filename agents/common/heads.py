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


class GaussianHead:
    """``N(mean, diag(exp(2 log_std)))`` on a minibatch: ``log π``, ``H`` and their chain rule.

    ``log π = −Σⱼ [zⱼ²/2 + log σⱼ + ½ log 2π]`` with ``z = (a − μ)/σ``; the standardised
    actions are computed once and shared by the forward terms and :meth:`grads`.

    Args:
        mean: ``(B, d)``; log_std: ``(d,)``; actions: ``(B, d)``.
    """

    def __init__(self, mean: torch.Tensor, log_std: torch.Tensor, actions: torch.Tensor):
        self._inv_std = torch.exp(-log_std)
        self._z = (actions - mean).mul_(self._inv_std)
        self._z_sq = self._z.square()
        const = log_std.sum() + _HALF_LOG_2PI * log_std.numel()
        self.outputs = HeadOutputs(
            log_prob=self._z_sq.sum(dim=-1).mul_(-0.5).sub_(const),
            entropy=(0.5 * log_std.numel() + const).expand(mean.shape[0]),
        )

    def grads(self, d_log_prob: torch.Tensor, d_entropy: float) -> HeadGrads:
        """Chain rule for ``ℓ = Σᵢ d_log_prob_i·log πᵢ + d_entropy·Σᵢ Hᵢ``.

        ``∂log π/∂μ = (a − μ)/σ²``, ``∂log π/∂log σ = z² − 1``, ``∂H/∂log σ = 1`` per dimension.

        Args:
            d_log_prob: ``(B,)`` derivative of the loss with respect to each ``log πᵢ``.
            d_entropy: derivative of the loss with respect to each ``Hᵢ`` (the same for all i).
        """
        d_out = (self._z * d_log_prob.unsqueeze(-1)).mul_(self._inv_std)
        # Σᵢ wᵢ(zᵢ² − 1) + d_entropy·B as one matrix-vector product and two scalar updates.
        offset = d_entropy * d_log_prob.shape[0] - d_log_prob.sum()
        d_log_std = torch.mv(self._z_sq.t(), d_log_prob).add_(offset)
        return HeadGrads(d_out, d_log_std)


class CategoricalHead:
    """``softmax(logits)`` on a minibatch: ``log π(a) = logits_a − logsumexp(logits)``,
    ``H = −Σ p log p``, and their chain rule, sharing ``log p`` between the two.

    Args:
        logits: ``(B, n)``; actions: ``(B,)`` integer actions.
    """

    def __init__(self, logits: torch.Tensor, actions: torch.Tensor):
        self._log_p = logits - logits.logsumexp(dim=-1, keepdim=True)
        self._p = self._log_p.exp()
        self._index = actions.long().unsqueeze(-1)
        self._entropy = -(self._p * self._log_p).sum(dim=-1, keepdim=True)
        self.outputs = HeadOutputs(
            log_prob=self._log_p.gather(-1, self._index).squeeze(-1),
            entropy=self._entropy.squeeze(-1),
        )

    def grads(self, d_log_prob: torch.Tensor, d_entropy: float) -> HeadGrads:
        """``∂log π(a)/∂logits = onehot(a) − p`` and ``∂H/∂logits = −p ⊙ (log p + H)``."""
        w = d_log_prob.unsqueeze(-1)
        d_out = self._p * (self._log_p + self._entropy).mul_(-d_entropy)
        d_out.sub_(self._p * w).scatter_add_(-1, self._index, w)
        return HeadGrads(d_out, None)


def gaussian(mean: torch.Tensor, log_std: torch.Tensor, actions: torch.Tensor) -> HeadOutputs:
    """``log π`` and ``H`` of :class:`GaussianHead`."""
    return GaussianHead(mean, log_std, actions).outputs


def gaussian_grads(
    mean: torch.Tensor,
    log_std: torch.Tensor,
    actions: torch.Tensor,
    d_log_prob: torch.Tensor,
    d_entropy: float,
) -> HeadGrads:
    """:meth:`GaussianHead.grads` on a fresh head."""
    return GaussianHead(mean, log_std, actions).grads(d_log_prob, d_entropy)


def categorical(logits: torch.Tensor, actions: torch.Tensor) -> HeadOutputs:
    """``log π`` and ``H`` of :class:`CategoricalHead`."""
    return CategoricalHead(logits, actions).outputs


def categorical_grads(
    logits: torch.Tensor, actions: torch.Tensor, d_log_prob: torch.Tensor, d_entropy: float
) -> HeadGrads:
    """:meth:`CategoricalHead.grads` on a fresh head."""
    return CategoricalHead(logits, actions).grads(d_log_prob, d_entropy)
