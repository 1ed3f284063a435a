"""Update pieces every agent shares: advantage normalisation, critic regression, diagnostics."""

from __future__ import annotations

import torch
from torch import nn

from agents.common.rollout import Batch


def normalize(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``(x − mean) / (std + eps)`` over the whole batch (SB3's advantage normalisation)."""
    return (x - x.mean()) / (x.std() + eps)


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
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator).to(batch.returns.device)
        for idx in order.split(batch_size):
            loss = nn.functional.mse_loss(critic(batch.obs[idx]), batch.returns[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach()
            count += 1
    return {"train/value_loss": (total / count).item()}
