"""Update pieces every agent shares: advantage normalisation, critic regression, diagnostics."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.distributions import Distribution
from torch.nn.utils import parameters_to_vector

from agents.common import fast_mlp
from agents.common.networks import Critic
from agents.common.rollout import Batch
from rl_ig.fisher import PolicyFisher
from rl_ig.geometry import at_parameters


def normalize(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``(x − mean) / (std + eps)`` over the whole batch (SB3's advantage normalisation)."""
    std, mean = torch.std_mean(x)
    return (x - mean).div_(std + eps)


def explained_variance(values: torch.Tensor, returns: torch.Tensor) -> float:
    """``1 − Var[R − V] / Var[R]``: 1 is a perfect critic, 0 no better than a constant."""
    var = returns.var()
    if var.item() == 0.0:
        return float("nan")
    return float(1.0 - (returns - values).var() / var)


def critic_epochs(
    critic: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: Batch,
    batch_size: int,
    epochs: int,
    generator: torch.Generator,
) -> dict[str, float]:
    """Regress ``V(s)`` on the λ-returns: ``epochs`` passes of shuffled minibatches.

    Returns:
        ``train/value_loss``: the mean squared error over every minibatch of every epoch.
    """
    n = batch.returns.shape[0]
    total = torch.zeros((), device=batch.returns.device)
    count = 0
    step = _mse_step(critic)
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator).to(batch.returns.device)
        # One gather per epoch; the minibatches are then contiguous slices of it.
        obs, returns = batch.obs[order], batch.returns[order]
        for start in range(0, n, batch_size):
            end = start + batch_size
            total += step(obs[start:end], returns[start:end])
            optimizer.step()
            count += 1
    return {"train/value_loss": (total / count).item()}


def _mse_step(critic: nn.Module) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``(obs, target) ↦ loss`` that leaves the MSE gradient in every parameter's ``.grad``.

    Linear/Tanh/ReLU critics take the hand-derived backward pass of :mod:`fast_mlp`
    (about twice as fast for the 64-64 critic, batch 128); others go through autograd.
    """
    layers = fast_mlp.as_layers(critic.net) if isinstance(critic, Critic) else None
    if layers is None:

        def autograd_step(obs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            loss = nn.functional.mse_loss(critic(obs), target)
            critic.zero_grad(set_to_none=True)
            loss.backward()
            return loss.detach()

        return autograd_step
    params = [t for layer in layers for t in (layer.weight, layer.bias)]

    def fast_step(obs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss, grads = fast_mlp.mse_step_grads(layers, obs, target)
        for p, g in zip(params, grads):
            p.grad = g
        return loss

    return fast_step


@torch.no_grad()
def assign_parameters(params: list[torch.Tensor], theta: torch.Tensor) -> None:
    """Set ``params`` to the flat vector ``theta: (n,)`` (``parameters_to_vector`` layout).

    Written in place with ``copy_``, which bumps the parameters' version counters, so that a
    :class:`~rl_ig.fisher.PolicyFisher` drops a linearisation cached at the old values
    (``vector_to_parameters`` rebinds ``param.data`` and leaves the counters as they were).
    The parameters never alias ``theta``.
    """
    for p, value in zip(params, theta.split([p.numel() for p in params])):
        p.copy_(value.view_as(p))


def step_geometry(
    fisher: PolicyFisher, obs: torch.Tensor, old_dist: Distribution, theta_old: torch.Tensor
) -> dict[str, float]:
    """The exact size of the step from ``theta_old`` to the policy's current parameters.

    Returns:
        ``train/kl``: mean over ``obs`` of KL(π_old || π_new);
        ``train/fisher_norm``: ``sqrt(Δᵀ F(θ_old) Δ)``, the step's length in the Fisher metric;
        ``train/step_norm``: its Euclidean length ``‖Δ‖``.
    """
    with torch.no_grad():
        kl = fisher.kl(obs, old_dist).item()
        delta = parameters_to_vector(fisher.params) - theta_old
    with at_parameters(fisher.params, theta_old):
        norm = fisher.fisher_norm(obs, delta).item()
    return {"train/kl": kl, "train/fisher_norm": norm, "train/step_norm": delta.norm().item()}
