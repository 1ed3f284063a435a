"""GAE against a plain per-environment loop, with termination and truncation."""

from __future__ import annotations

import numpy as np
import pytest

from agents.common.gae import compute_gae, next_state_values


def reference_gae(rewards, values, last_values, terminated, truncated, final_values, gamma, lam):
    """The textbook recursion, one environment and one step at a time, in Python floats."""
    t_max, n_envs = rewards.shape
    adv = np.zeros((t_max, n_envs))
    for e in range(n_envs):
        acc = 0.0
        for t in reversed(range(t_max)):
            if terminated[t, e]:
                v_next, cont = 0.0, 0.0
            elif truncated[t, e]:
                v_next, cont = final_values[t, e], 0.0
            else:
                v_next = values[t + 1, e] if t + 1 < t_max else last_values[e]
                cont = 1.0
            delta = rewards[t, e] + gamma * v_next - values[t, e]
            acc = delta + gamma * lam * cont * acc
            adv[t, e] = acc
    return adv, adv + values


@pytest.mark.parametrize("seed", range(5))
def test_gae_matches_reference_loop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    t_max, n_envs = 37, 3
    rewards = rng.normal(size=(t_max, n_envs))
    values = rng.normal(size=(t_max, n_envs))
    last_values = rng.normal(size=n_envs)
    final_values = rng.normal(size=(t_max, n_envs))
    terminated = rng.random((t_max, n_envs)) < 0.08
    truncated = (rng.random((t_max, n_envs)) < 0.08) & ~terminated
    gamma, lam = 0.97, 0.9
    nxt = next_state_values(values, last_values, terminated, truncated, final_values)
    adv, ret = compute_gae(rewards, values, nxt, terminated | truncated, gamma, lam)
    ref_adv, ref_ret = reference_gae(
        rewards, values, last_values, terminated, truncated, final_values, gamma, lam
    )
    np.testing.assert_allclose(adv, ref_adv, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ret, ref_ret, rtol=1e-5, atol=1e-5)


def test_truncation_bootstraps_and_termination_does_not() -> None:
    # One step, reward 1, V(s)=0, final-state value 10, γ=0.5: a truncated step's advantage is
    # 1 + 0.5·10 = 6; a terminated one's is 1.
    rewards = np.array([[1.0, 1.0]])
    values = np.zeros((1, 2))
    final = np.array([[10.0, 10.0]])
    terminated = np.array([[False, True]])
    truncated = np.array([[True, False]])
    nxt = next_state_values(values, np.array([99.0, 99.0]), terminated, truncated, final)
    adv, _ = compute_gae(rewards, values, nxt, terminated | truncated, 0.5, 0.95)
    np.testing.assert_allclose(adv, [[6.0, 1.0]])


def test_lambda_one_gives_discounted_returns() -> None:
    rewards = np.array([[1.0], [2.0], [3.0]])
    values = np.zeros((3, 1))
    nxt = next_state_values(
        values, np.array([4.0]), np.zeros((3, 1), bool), np.zeros((3, 1), bool), np.zeros((3, 1))
    )
    _, ret = compute_gae(rewards, values, nxt, np.zeros((3, 1), bool), 0.9, 1.0)
    expected = 1 + 0.9 * 2 + 0.81 * 3 + 0.729 * 4
    np.testing.assert_allclose(ret[0, 0], expected, rtol=1e-6)
