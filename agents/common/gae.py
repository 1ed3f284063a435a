"""Generalised advantage estimation (Schulman et al. 2016, eq. 16) with truncation handling."""

from __future__ import annotations

import numpy as np


def compute_gae(
    rewards: np.ndarray,
    values: np.ndarray,
    next_values: np.ndarray,
    episode_end: np.ndarray,
    gamma: float,
    gae_lambda: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Advantages ``Â_t = Σ_k (γλ)^k δ_{t+k}`` within each episode, and λ-returns ``Â + V``.

    ``δ_t = r_t + γ V(s_{t+1}) − V(s_t)``, where ``V(s_{t+1})`` is ``next_values[t]``: the value
    of the next state of the same episode, of the final observation when a time limit truncated
    it (bootstrap), and 0 when it terminated. ``episode_end`` cuts the trace in both cases.

    Args:
        rewards: ``(T, E)`` rewards of ``T`` steps in ``E`` environments.
        values: ``(T, E)`` critic values ``V(s_t)``.
        next_values: ``(T, E)`` values of the states that follow, as above.
        episode_end: ``(T, E)`` bool, the episode ended (terminated or truncated) at step t.
        gamma: discount ``γ``.
        gae_lambda: ``λ``.

    Returns:
        ``(advantages, returns)``, both ``(T, E)`` float32.
    """
    deltas = rewards + gamma * next_values - values
    decay = gamma * gae_lambda * (1.0 - episode_end.astype(np.float64))
    advantages = np.zeros_like(deltas, dtype=np.float64)
    running = np.zeros(deltas.shape[1], dtype=np.float64)
    for t in range(deltas.shape[0] - 1, -1, -1):
        running = deltas[t] + decay[t] * running
        advantages[t] = running
    returns = advantages + values
    return advantages.astype(np.float32), returns.astype(np.float32)


def next_state_values(
    values: np.ndarray,
    last_values: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
    final_values: np.ndarray,
) -> np.ndarray:
    """``V(s_{t+1})`` for every step: bootstrap on truncation, zero on termination.

    Args:
        values: ``(T, E)`` values of the visited states.
        last_values: ``(E,)`` values of the states after the last step.
        terminated: ``(T, E)`` bool, a terminal state was reached.
        truncated: ``(T, E)`` bool, a time limit cut the episode (and it did not terminate).
        final_values: ``(T, E)`` values of the final observations where ``truncated``
            (ignored elsewhere).
    """
    nxt = np.concatenate([values[1:], last_values[None]], axis=0)
    nxt = np.where(truncated, final_values, nxt)
    return np.where(terminated, 0.0, nxt)
