"""ACKTR: every applied step inside the K-FAC trust region; it learns; bad input is named."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import envs
from agents import ACKTR
from agents.training import evaluate


def _kfac_quadratic(agent: ACKTR, before: dict[str, torch.Tensor]) -> float:
    """``Δᵀ F̂ Δ`` of the actor's last step, from the optimizer's factors (recomputed here).

    Per layer ``vec(Δ̄)ᵀ(A ⊗ G + λI)vec(Δ̄) = Σ Δ̄ ⊙ (G Δ̄ A) + λ‖Δ̄‖²`` with ``Δ̄ = [ΔW, Δb]``;
    the Gaussian's ``log_std`` has the exact Fisher block ``2·I``.
    """
    factors = agent.actor_optimizer.factors()
    damping = agent.config.damping
    total = 0.0
    for name, module in agent.actor.named_modules():
        if not isinstance(module, nn.Linear):
            continue
        dw = module.weight.detach() - before[f"{name}.weight"]
        db = module.bias.detach() - before[f"{name}.bias"]
        d = torch.cat([dw, db.unsqueeze(1)], dim=1).double()
        a, g = (f.double() for f in factors[name])
        total += float((d * (g @ d @ a)).sum() + damping * d.square().sum())
    d_log_std = agent.actor.log_std.detach() - before["log_std"]
    return total + 2.0 * float(d_log_std.double().square().sum())


@pytest.mark.parametrize("max_kl", [1e-3, 1e-2])
def test_every_applied_step_is_inside_the_trust_region(max_kl: float) -> None:
    env = envs.make_vec_env("Pendulum", n_envs=2, seed=0)
    # Eigenbases refreshed every step, so the step's metric is the factors' current one.
    agent = ACKTR(env, seed=0, n_steps=32, max_kl=max_kl, inverse_update_freq=1)
    clipped = 0
    for _ in range(30):
        before = {k: v.detach().clone() for k, v in agent.actor.state_dict().items()}
        info = agent.train_iteration()
        predicted = 0.5 * _kfac_quadratic(agent, before)  # ½·δᵀF̂δ of the applied step δ
        assert predicted <= max_kl * (1 + 1e-4)
        assert predicted == pytest.approx(info["train/kfac_predicted_kl"], rel=1e-3)
        if info["train/kl_clip_scale"] < 1.0:
            clipped += 1
            assert predicted == pytest.approx(max_kl, rel=1e-3)
    assert clipped >= 10  # the bound must be exercised, not only satisfied trivially


def test_actor_factors_come_from_sampled_actions() -> None:
    """G is the true Fisher's: the same whatever actions were taken in the rollout."""
    torch.manual_seed(0)
    agent = ACKTR(envs.make_vec_env("Pendulum", n_envs=1, seed=0), seed=0, n_steps=64)
    obs = torch.randn(64, 3)
    adv = torch.randn(64)
    state = agent.generator.get_state()
    agent.actor_step(obs, torch.zeros(64, 1), adv)
    g_zero = agent.actor_optimizer.factors()["net.4"][1]
    twin = ACKTR(envs.make_vec_env("Pendulum", n_envs=1, seed=0), seed=0, n_steps=64)
    twin.generator.set_state(state)
    twin.actor_step(obs, 5.0 * torch.ones(64, 1), adv)
    torch.testing.assert_close(twin.actor_optimizer.factors()["net.4"][1], g_zero)


@pytest.mark.slow
def test_acktr_learns_cartpole() -> None:
    # Stated target: a deterministic return of at least 400 (of 500) after 50,000 steps, for the
    # median of seeds 0-4. Single seeds hang on the CPU's rounding: with one thread, seeds 0-4
    # gave 500 except seed 3 (219) on one Xeon, and 50, 500, 500, 139, 500 on another with
    # AVX-512 kernels; the median was 500 on both.
    returns = []
    for seed in range(5):
        agent = ACKTR(envs.make_vec_env("CartPole", n_envs=4, seed=seed), seed=seed)
        agent.learn(50_000)
        result = evaluate(agent, envs.make_vec_env("CartPole", n_envs=1, seed=100), 5)
        returns.append(result.mean_reward)
    assert sorted(returns)[2] >= 400, f"returns of seeds 0-4: {returns}"


@pytest.mark.slow
def test_acktr_learns_inverted_pendulum() -> None:
    # Stated target: a deterministic return of at least 900 (of 1000) after 40,960 steps.
    agent = ACKTR(envs.make_vec_env("InvertedPendulum", n_envs=2, seed=0), seed=0, n_steps=64)
    agent.learn(40_960)
    result = evaluate(agent, envs.make_vec_env("InvertedPendulum", n_envs=1, seed=100), 5)
    assert result.mean_reward >= 900


def test_bad_hyperparameters_name_the_field() -> None:
    env = envs.make_vec_env("Pendulum", n_envs=1, seed=0)
    with pytest.raises(ValueError, match=r"max_kl must be in \(0.0, inf\), got -1"):
        ACKTR(env, max_kl=-1)
    with pytest.raises(ValueError, match=r"momentum must be in \[0.0, 1.0\), got 1.0"):
        ACKTR(env, momentum=1.0)
    with pytest.raises(ValueError, match="learning_rate must be a positive number"):
        ACKTR(env, learning_rate="fast")
    with pytest.raises(ValueError, match="unknown hyperparameter 'kl_clipp'"):
        ACKTR(env, kl_clipp=0.1)


def test_vf_iters_takes_that_many_critic_steps() -> None:
    env = envs.make_vec_env("Pendulum", n_envs=1, seed=0)
    agent = ACKTR(env, seed=0, n_steps=16, vf_iters=3)
    agent.learn(32)  # two updates
    state = agent.critic_optimizer.state_dict()["state"]
    assert max(int(s.get("kfac_step", 0)) for s in state.values()) == 6
    assert agent.actor_optimizer.state_dict()["state"][0]["kfac_step"] == 2
    with pytest.raises(ValueError, match="vf_iters must be an integer >= 1, got 0"):
        ACKTR(env, vf_iters=0)
