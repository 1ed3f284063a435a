"""The joint actor-critic gradient that PPO and A2C share, and their learning-rate schedules.

Both minimise, on a minibatch of ``B`` transitions (Mnih et al. 2016; Schulman et al. 2017),

    ℓ = ℓ_π(log π(a|s)) − ent_coef · mean H(π(·|s)) + vf_coef · ℓ_V(V(s)),

and differ only in ``ℓ_π`` (a plain or a clipped surrogate) and ``ℓ_V``. Each algorithm gives
its two losses as functions that also return their derivative with respect to their argument;
:class:`ActorCriticGradient` carries those derivatives through the heads in closed form and
through the networks, by the hand-written backward pass of :mod:`fast_mlp` for Linear/Tanh/ReLU
stacks and by autograd otherwise. The gradient is the same either way (tested in float64).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from agents.common import fast_mlp, heads
from agents.common.networks import Actor, Critic, GaussianActor
from rl_ig.run import one_line

LossAndGrad = tuple[torch.Tensor, torch.Tensor]
"""A scalar loss and its derivative with respect to the loss's ``(B,)`` argument."""


@dataclass(frozen=True)
class MinibatchLosses:
    """The terms of the actor-critic loss on one minibatch (detached scalars)."""

    policy: torch.Tensor
    value: torch.Tensor
    entropy: torch.Tensor
    log_prob: torch.Tensor
    grad_norm: torch.Tensor


class ActorCriticGradient:
    """Writes ``∇ℓ`` into the ``.grad`` of every actor and critic parameter.

    Args:
        actor: the policy; its ``net`` output parameterises the head.
        critic: the value function.
        compile: evaluate through ``torch.compile`` (inductor), which fuses the dozens of
            small elementwise operations of the heads, losses and backward passes; the first
            calls compile (once per minibatch shape), later ones run the fused kernels.
    """

    def __init__(self, actor: Actor, critic: Critic, compile: bool = False):
        self.actor, self.critic = actor, critic
        self._actor_layers = fast_mlp.as_layers(actor.net)
        self._critic_layers = fast_mlp.as_layers(critic.net)
        self._actor_net_params = _layer_parameters(self._actor_layers)
        self._critic_net_params = _layer_parameters(self._critic_layers)
        self.parameters = [*actor.parameters(), *critic.parameters()]
        self._evaluate = self._evaluate_eager
        if compile:
            # Gradient buffers from the start, so that the first call traces the same graph as
            # every later one (one compilation per minibatch shape).
            with torch.no_grad():
                for p in self.parameters:
                    if p.grad is None:
                        p.grad = torch.zeros_like(p)
            self._evaluate = torch.compile(self._evaluate_eager, dynamic=False)

    def __call__(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        policy_loss: Callable[[torch.Tensor], LossAndGrad],
        value_loss: Callable[[torch.Tensor], LossAndGrad],
        ent_coef: float,
        vf_coef: float,
        max_grad_norm: float | None,
    ) -> MinibatchLosses:
        """Evaluate ``ℓ`` on ``obs: (B, obs_dim)``, ``actions`` and fill the gradients, clipped
        to global norm ``max_grad_norm`` (None: not clipped); ``grad_norm`` is the norm before."""
        args = (obs, actions, policy_loss, value_loss, ent_coef, vf_coef, max_grad_norm)
        if self._evaluate is self._evaluate_eager:
            return self._evaluate_eager(*args)
        try:
            return self._evaluate(*args)
        except torch._dynamo.exc.BackendCompilerFailed as exc:
            # Inductor needs a working C++ toolchain; without one, run the same code eagerly.
            warnings.warn(
                f"torch.compile failed ({one_line(exc)[:200]}); the actor-critic gradient runs "
                "eagerly (set compile=False to skip the attempt)",
                RuntimeWarning,
                stacklevel=2,
            )
            self._evaluate = self._evaluate_eager
            return self._evaluate_eager(*args)

    def _evaluate_eager(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        policy_loss: Callable[[torch.Tensor], LossAndGrad],
        value_loss: Callable[[torch.Tensor], LossAndGrad],
        ent_coef: float,
        vf_coef: float,
        max_grad_norm: float | None,
    ) -> MinibatchLosses:
        out, backward_actor = _forward(self.actor.net, self._actor_layers, obs)
        head = self._head(out, actions)
        outputs = head.outputs
        pg_loss, d_log_prob = policy_loss(outputs.log_prob)
        head_grads = head.grads(d_log_prob, -ent_coef / obs.shape[0])
        values, backward_critic = _forward(self.critic.net, self._critic_layers, obs)
        v_loss, d_values = value_loss(values.squeeze(-1))
        _assign(backward_actor(head_grads.d_out), self._actor_net_params)
        if head_grads.d_log_std is not None:
            self.actor.log_std.grad = head_grads.d_log_std
        _assign(backward_critic((vf_coef * d_values).unsqueeze(-1)), self._critic_net_params)
        grad_norm = clip_grad_norm(self.parameters, max_grad_norm)
        entropy = outputs.entropy.mean()
        return MinibatchLosses(
            pg_loss.detach(), v_loss.detach(), entropy, outputs.log_prob, grad_norm
        )

    def _head(
        self, out: torch.Tensor, actions: torch.Tensor
    ) -> heads.GaussianHead | heads.CategoricalHead:
        if isinstance(self.actor, GaussianActor):
            return heads.GaussianHead(out, self.actor.log_std.detach(), actions)
        return heads.CategoricalHead(out, actions)


def _layer_parameters(layers: list[fast_mlp.Layer] | None) -> list[torch.Tensor]:
    return [] if layers is None else [t for layer in layers for t in (layer.weight, layer.bias)]


def _assign(grads: list[torch.Tensor] | None, params: list[torch.Tensor]) -> None:
    if grads is None:  # autograd already accumulated into .grad
        return
    for p, g in zip(params, grads):
        if p.grad is not g:
            p.grad = g


def _forward(
    net: nn.Sequential, layers: list[fast_mlp.Layer] | None, obs: torch.Tensor
) -> tuple[torch.Tensor, Callable[[torch.Tensor], list[torch.Tensor] | None]]:
    """The net's output (detached) and a function back-propagating an output error."""
    if layers is not None:
        with torch.no_grad():
            out, inputs = fast_mlp.forward(layers, obs)

        params = _layer_parameters(layers)

        @torch.no_grad()  # the weights require grad: without this autograd records a graph
        def fast_backward(delta: torch.Tensor) -> list[torch.Tensor]:
            buffers = [p.grad for p in params]
            if any(b is None or b.shape != p.shape for b, p in zip(buffers, params)):
                return fast_mlp.backward(layers, inputs, delta)
            return fast_mlp.backward(layers, inputs, delta, out=buffers)  # type: ignore[arg-type]

        return out, fast_backward
    for p in net.parameters():
        p.grad = None
    out = net(obs)

    def backward(delta: torch.Tensor) -> None:
        out.backward(delta)

    return out.detach(), backward


@torch.no_grad()
def clip_grad_norm(parameters: list[torch.Tensor], max_norm: float | None) -> torch.Tensor:
    """Scale gradients to global norm at most ``max_norm`` (None: no clip); returns the norm.

    The same rule as ``torch.nn.utils.clip_grad_norm_`` (scale by ``max_norm / (norm + 1e-6)``
    when that is below 1), in three kernel calls for the small parameter lists of RL networks.
    """
    grads = [p.grad for p in parameters if p.grad is not None]
    norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    if max_norm is not None:
        scale = (max_norm / (norm + 1e-6)).clamp_max_(1.0)
        torch._foreach_mul_(grads, scale)
    return norm


# -- schedules ---------------------------------------------------------------------------------

Schedule = Callable[[float], float]


def parse_schedule(name: str, value: float | str) -> Schedule:
    """A constant, or rl-zoo's ``"lin_X"``: ``X`` times the fraction of training remaining.

    Raises:
        ValueError: for anything else, or ``X`` not a positive finite number.
    """
    if isinstance(value, str):
        text = value.removeprefix("lin_")
        try:
            start = float(text) if text != value else math.nan
        except ValueError:
            start = math.nan
        if not (math.isfinite(start) and start > 0):
            raise ValueError(
                f"{name} must be a positive number or 'lin_X' (linear decay from X), got {value!r}"
            )
        return lambda progress_remaining: start * progress_remaining
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number or 'lin_X', got {value!r}")
    constant = float(value)
    return lambda progress_remaining: constant


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
