"""Every agent's update records the geometry of its step, without changing the training.

On measured updates (the first and every ``geometry_every``-th) the base class adds the common
``geometry/`` measures; each agent adds its own (line search, clip, K-FAC). Measuring must leave
parameters, returns and every random-number generator exactly as they would have been.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn.utils import parameters_to_vector

import envs
from agents import A2C, ACKTR, ALGOS, NPG, PPO, TRPO, OnPolicyAgent, TRPOConfig
from agents.common.geometry import StepProbe, measure_update
from rl_ig.fisher import PolicyFisher
from rl_ig.geometry import kfac_flat_direction

NET = {"pi": [16, 16], "vf": [16, 16]}
SMALL = {
    "trpo": dict(n_steps=64, batch_size=64, n_critic_updates=2, cg_iters=5),
    "npg": dict(n_steps=64, batch_size=64, n_critic_updates=2, cg_iters=5, step_size=0.05),
    "ppo": dict(n_steps=64, batch_size=32, n_epochs=2),
    "acktr": dict(n_steps=16, inverse_update_freq=2),
    "a2c": dict(n_steps=16),
}
COMMON = {
    "geometry/kl_mean",
    "geometry/kl_max",
    "geometry/fisher_norm",
    "geometry/euclidean_norm",
    "geometry/ng_cosine",
    "geometry/predicted_gain",
    "geometry/obtained_gain",
    "geometry/gain_ratio",
    "geometry/fisher_eig_1",
    "geometry/fisher_eig_2",
    "geometry/fisher_eig_3",
}
EVERY_UPDATE = {
    "trpo": {"geometry/kl_bound", "geometry/backtracks", "geometry/accepted_fraction"},
    "npg": {"geometry/kl_bound", "geometry/backtracks", "geometry/accepted_fraction"},
    "ppo": {
        "geometry/kl_bound",
        "geometry/clip_fraction",
        "geometry/ratio_spread",
        "geometry/epochs",
    },
    "acktr": {"geometry/kl_bound", "geometry/kl_clip_scale"},
    "a2c": {"geometry/kl_bound"},
}
MEASURED_ONLY = {"acktr": {"geometry/kfac_error", "geometry/cond_A_max", "geometry/cond_G_max"}}


def _agent(algo: str, env: str = "Pendulum", geometry_every: int = 1, **hp) -> OnPolicyAgent:
    settings = {**SMALL[algo], "policy": NET, **hp}
    vec_env = envs.make_vec_env(env, n_envs=2, seed=4)
    return ALGOS[algo](vec_env, seed=4, geometry_every=geometry_every, **settings)


def _train(agent: OnPolicyAgent, updates: int) -> list[dict[str, float]]:
    infos: list[dict[str, float]] = []
    steps = updates * agent.config.n_steps * agent.env.num_envs
    agent.learn(steps, callback=lambda _, info: infos.append(info))
    return infos


def _flat(agent: OnPolicyAgent) -> torch.Tensor:
    return parameters_to_vector([*agent.actor.parameters(), *agent.critic.parameters()]).detach()


# -- measuring changes nothing -----------------------------------------------------------------


@pytest.mark.parametrize("env", ["Pendulum", "CartPole"])
@pytest.mark.parametrize("algo", sorted(SMALL))
def test_measuring_every_update_leaves_the_training_bit_identical(algo: str, env: str) -> None:
    def run(geometry_every: int):
        torch.manual_seed(123)
        np.random.seed(123)
        agent = _agent(algo, env, geometry_every)
        infos = _train(agent, 6)
        rng = (torch.get_rng_state(), np.random.get_state()[1].copy())
        return agent, infos, rng

    measured, measured_infos, measured_rng = run(1)
    plain, plain_infos, plain_rng = run(0)

    assert all(info.keys() >= COMMON for info in measured_infos)
    assert not any(COMMON & info.keys() for info in plain_infos)
    assert torch.equal(_flat(measured), _flat(plain))
    assert measured.collector.episode_returns == plain.collector.episode_returns
    assert torch.equal(measured.generator.get_state(), plain.generator.get_state())
    assert torch.equal(measured_rng[0], plain_rng[0])
    assert np.array_equal(measured_rng[1], plain_rng[1])
    for m, p in zip(measured_infos, plain_infos):  # the agent's own records are the same too
        np.testing.assert_equal(
            {k: v for k, v in m.items() if k.startswith("train/")},
            {k: v for k, v in p.items() if k.startswith("train/")},
        )


def test_the_first_update_and_every_nth_after_it_are_measured() -> None:
    infos = _train(_agent("a2c", geometry_every=3), 7)
    measured = [i for i, info in enumerate(infos) if info.keys() >= COMMON]
    assert measured == [0, 3, 6]
    assert [i for i, info in enumerate(infos) if "time/geometry_s" in info] == [0, 3, 6]
    assert all("geometry/kl_bound" in info for info in infos)


# -- the measures ------------------------------------------------------------------------------


@pytest.mark.parametrize("algo", sorted(SMALL))
def test_measured_updates_carry_the_common_and_the_agents_own_keys(algo: str) -> None:
    infos = _train(_agent(algo, geometry_every=2), 4)
    own, measured_only = EVERY_UPDATE[algo], MEASURED_ONLY.get(algo, set())
    for n, info in enumerate(infos):
        geometry = {k for k in info if k.startswith("geometry/")}
        expected = own | COMMON | measured_only if n % 2 == 0 else own
        assert geometry == expected
        assert all(isinstance(info[k], float) for k in geometry)
        if n % 2 == 0:
            assert info["geometry/kl_mean"] <= info["geometry/kl_max"]
            assert info["geometry/fisher_eig_1"] >= info["geometry/fisher_eig_2"] > 0.0


@pytest.mark.parametrize("algo", sorted(SMALL))
def test_geometry_fisher_norm_is_the_updates_fisher_norm(algo: str) -> None:
    infos = _train(_agent(algo), 3)
    for info in infos:
        assert info["geometry/fisher_norm"] == pytest.approx(info["train/fisher_norm"], rel=1e-5)
        assert info["geometry/kl_mean"] == pytest.approx(info["train/kl"], rel=1e-5)


def test_trpo_steps_along_the_natural_gradient_and_sgd_does_not() -> None:
    # TRPO solved with the reference's own damping and CG iterations: its direction is the
    # natural gradient the cosine compares with. Same batch (2 × 64) for both.
    trpo = _agent("trpo", n_steps=64, cg_iters=10, cg_damping=1e-3)
    a2c = _agent("a2c", n_steps=64, optimizer="sgd", learning_rate=1e-2)
    trpo_cosines = [info["geometry/ng_cosine"] for info in _train(trpo, 5)]
    sgd_cosines = [info["geometry/ng_cosine"] for info in _train(a2c, 5)]
    assert min(trpo_cosines) > 0.99
    assert max(sgd_cosines) < 0.9  # measured 0.03 to 0.58
    assert np.mean(sgd_cosines) < np.mean(trpo_cosines) - 0.3


def test_predicted_and_obtained_gain_agree_for_small_natural_steps() -> None:
    infos = _train(_agent("npg", step_size=0.01), 3)
    for info in infos:
        assert info["geometry/predicted_gain"] > 0.0
        assert info["geometry/gain_ratio"] == pytest.approx(1.0, abs=0.02)
        ratio = info["geometry/obtained_gain"] / info["geometry/predicted_gain"]
        assert info["geometry/gain_ratio"] == pytest.approx(ratio)


def test_trpo_and_npg_report_their_line_search() -> None:
    # Steps long enough to backtrack, and a search short enough to fail now and then.
    trpo_infos = _train(_agent("trpo", max_kl=2.0, line_search_max_iter=2), 6)
    shrink = TRPOConfig().line_search_shrink
    for info in trpo_infos:
        assert info["geometry/backtracks"] == info["train/backtracks"]
        success = info["train/is_line_search_success"] == 1.0
        expected = shrink ** info["geometry/backtracks"] if success else 0.0
        assert info["geometry/accepted_fraction"] == pytest.approx(expected)
        assert info["geometry/kl_bound"] == 2.0
    fractions = {info["geometry/accepted_fraction"] for info in trpo_infos}
    assert {0.0, shrink} <= fractions  # one rejected search, one backtrack
    for info in _train(_agent("npg"), 2):
        assert (info["geometry/backtracks"], info["geometry/accepted_fraction"]) == (0.0, 1.0)
        assert math.isnan(info["geometry/kl_bound"])


def test_ppo_reports_clip_ratio_spread_and_early_stopped_epochs() -> None:
    stopped = _train(_agent("ppo", n_epochs=5, target_kl=1e-9, learning_rate=1e-3), 2)
    for info in stopped:
        assert info["geometry/epochs"] == info["train/epochs"] == 1.0
        assert info["geometry/clip_fraction"] == info["train/clip_fraction"]
        assert info["geometry/ratio_spread"] > 0.0
        assert info["geometry/kl_bound"] == 1e-9
    for info in _train(_agent("ppo", learning_rate=3e-2, clip_range=0.01), 2):
        assert info["geometry/epochs"] == 2.0
        assert 0.0 < info["geometry/clip_fraction"] <= 1.0
        assert math.isnan(info["geometry/kl_bound"])


def test_ratio_spread_is_the_std_of_the_probability_ratio() -> None:
    agent = _agent("ppo")
    agent.collector.collect(agent.actor, agent.generator)
    batch = agent.collector.batch(agent.critic, agent.config.gamma, agent.config.gae_lambda)
    with torch.no_grad():
        old = agent.actor(batch.obs).log_prob(batch.actions)
    info = agent.update(batch)
    with torch.no_grad():
        new = agent.actor(batch.obs).log_prob(batch.actions)
    ratio = (new - old).exp().double()
    assert info["geometry/ratio_spread"] == pytest.approx(float(ratio.std()), rel=1e-4)


@pytest.mark.parametrize("env", ["Pendulum", "CartPole"])
def test_acktr_reports_its_kl_clip_and_kfac_error(env: str) -> None:
    infos = _train(_agent("acktr", env), 4)
    for info in infos:
        assert 0.0 < info["geometry/kl_clip_scale"] <= 1.0
        assert info["geometry/kl_clip_scale"] == info["train/kl_clip_scale"]
        assert math.isfinite(info["geometry/kfac_error"]) and info["geometry/kfac_error"] >= 0.0
        assert info["geometry/cond_A_max"] >= 1.0 and info["geometry/cond_G_max"] >= 1.0
        assert info["geometry/kl_bound"] == 0.003


def test_the_kfac_direction_compared_is_the_step_acktr_took() -> None:
    agent = _agent("acktr", geometry_every=0)
    assert isinstance(agent, ACKTR)
    for _ in range(3):
        agent.collector.collect(agent.actor, agent.generator)
        batch = agent.collector.batch(agent.critic, agent.config.gamma, agent.config.gae_lambda)
        probe = StepProbe.before(agent.fisher, batch)
        info = agent.update(batch)
        _, grad = measure_update(agent.fisher, probe)
        step = parameters_to_vector(agent.fisher.params).detach() - probe.theta_old
        direction = kfac_flat_direction(agent.actor_optimizer, agent.fisher.params, grad)
        lr = agent.actor_optimizer.param_groups[0]["lr"]
        scale = lr * info["train/kl_clip_scale"]
        torch.testing.assert_close(step, scale * direction, rtol=1e-4, atol=1e-7)


def test_kl_bounds() -> None:
    env = "Pendulum"
    assert _agent("trpo", env, max_kl=0.02).kl_bound() == 0.02
    assert _agent("acktr", env, max_kl=0.004).kl_bound() == 0.004
    assert _agent("ppo", env, target_kl=0.03).kl_bound() == 0.03
    assert math.isnan(_agent("ppo", env).kl_bound())
    assert math.isnan(_agent("npg", env).kl_bound())
    assert math.isnan(_agent("a2c", env).kl_bound())


# -- the setting -------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [-1, 1.5, True, "10", None])
def test_geometry_every_must_be_an_integer_at_least_0(bad: object) -> None:
    with pytest.raises(ValueError) as info:
        A2C(envs.make_vec_env("CartPole"), geometry_every=bad)
    assert str(info.value) == (
        f"geometry_every must be an integer >= 0 (0: never measure), got {bad!r}"
    )


def test_geometry_every_is_saved_and_loaded(tmp_path: Path) -> None:
    agent = _agent("ppo", geometry_every=7)
    assert (agent.metadata()["geometry_every"], PPO(agent.env).geometry_every) == (7, 10)
    path = agent.save(tmp_path / "ppo.pt")
    assert PPO.load(path).geometry_every == 7
    assert PPO.load(path, geometry_every=0).geometry_every == 0


def test_a2c_metadata_names_its_optimizer() -> None:
    for name in ("sgd", "rmsprop", "adam"):
        agent = A2C(envs.make_vec_env("CartPole"), optimizer=name, policy=NET)
        assert agent.metadata()["config"]["optimizer"] == name


# -- parameter assignment invalidates the Fisher's cached linearisation -------------------------


@pytest.mark.parametrize("cls", [TRPO, NPG])
def test_fisher_after_the_line_search_assignment_is_taken_at_the_new_parameters(
    cls: type[TRPO],
) -> None:
    agent = cls(envs.make_vec_env("Pendulum", n_envs=2, seed=1), seed=1, geometry_every=0)
    agent.collector.collect(agent.actor, agent.generator)
    batch = agent.collector.batch(agent.critic, agent.config.gamma, agent.config.gae_lambda)
    v = torch.randn(agent.fisher.dim, generator=torch.Generator().manual_seed(0))
    before = agent.fisher.fvp(batch.obs, v)  # caches the linearisation for batch.obs
    theta_old = parameters_to_vector(agent.fisher.params).detach().clone()
    agent.update(batch)
    assert not torch.equal(parameters_to_vector(agent.fisher.params), theta_old)

    after = agent.fisher.fvp(batch.obs, v)

    fresh = PolicyFisher(agent.actor).fvp(batch.obs, v)
    torch.testing.assert_close(after, fresh, rtol=1e-6, atol=1e-6)
    assert not torch.allclose(after, before, rtol=1e-3, atol=1e-5)
