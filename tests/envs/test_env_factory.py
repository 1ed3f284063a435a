"""Tests for envs.factory: the SB3 stack, argument checks, seeding, monitoring, truncation."""

from __future__ import annotations

import re
from typing import Any

import gymnasium
import numpy as np
import pytest
from gymnasium.wrappers import PassiveEnvChecker, TimeLimit
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecMonitor, VecNormalize

from envs import make_vec_env, resolve_env_id


def _wrapper_types(env: gymnasium.Env) -> list[type]:
    """Types of the gymnasium wrappers around one env, outermost first."""
    types = []
    while isinstance(env, gymnasium.Wrapper):
        types.append(type(env))
        env = env.env
    return types


def _rollout(venv: VecEnv, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reset, then step through ``actions: (T, n_envs, ...)``; stacked obs, rewards, dones."""
    observations, rewards, dones = [venv.reset()], [], []
    for action in actions:
        obs, reward, done, _ = venv.step(action)
        observations.append(obs)
        rewards.append(reward)
        dones.append(done)
    return np.stack(observations), np.stack(rewards), np.stack(dones)


def test_stack_is_vec_normalize_over_vec_monitor_over_dummy() -> None:
    venv = make_vec_env("Pendulum", n_envs=2, normalize_obs=True, gamma=0.9, clip_obs=5.0)

    assert isinstance(venv, VecNormalize)
    assert isinstance(venv.venv, VecMonitor)
    assert isinstance(venv.venv.venv, DummyVecEnv)
    assert (venv.norm_obs, venv.norm_reward) == (True, False)
    assert (venv.gamma, venv.clip_obs, venv.clip_reward) == (0.9, 5.0, 10.0)


def test_without_normalization_the_stack_has_no_vec_normalize() -> None:
    venv = make_vec_env("CartPole", n_envs=3)

    assert isinstance(venv, VecMonitor)
    assert isinstance(venv.venv, DummyVecEnv)
    assert venv.num_envs == 3


def test_each_env_keeps_time_limit_without_checker_or_rendering() -> None:
    venv = make_vec_env("Pendulum", n_envs=2, normalize_reward=True)

    for env in venv.venv.venv.envs:
        assert env.spec is not None and env.spec.id == resolve_env_id("Pendulum")
        assert TimeLimit in _wrapper_types(env)
        assert PassiveEnvChecker not in _wrapper_types(env)
        assert env.render_mode is None
    assert venv.render_mode is None


def test_half_cheetah_builds_from_its_short_name() -> None:
    pytest.importorskip("mujoco")
    venv = make_vec_env("halfcheetah")

    env = venv.venv.envs[0]
    assert env.spec is not None and env.spec.id == resolve_env_id("HalfCheetah")
    assert env.spec.max_episode_steps == 1000
    assert venv.reset().shape == (1, *env.observation_space.shape)


def test_env_kwargs_reach_gymnasium_make() -> None:
    venv = make_vec_env("Pendulum", env_kwargs={"g": 5.0, "max_episode_steps": 7})

    env = venv.venv.envs[0]
    assert env.unwrapped.g == 5.0
    assert env.spec is not None and env.spec.max_episode_steps == 7


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"n_envs": 0}, ValueError, "n_envs must be an int >= 1, got 0"),
        ({"n_envs": 2.0}, TypeError, "n_envs must be an int >= 1, got float 2.0"),
        ({"n_envs": True}, TypeError, "n_envs must be an int >= 1, got bool True"),
        ({"seed": -1}, ValueError, "seed must be an int >= 0, got -1"),
        ({"seed": True}, TypeError, "seed must be an int >= 0, got bool True"),
        ({"seed": "0"}, TypeError, "seed must be an int >= 0, got str '0'"),
        ({"gamma": 0.0}, ValueError, "gamma must be in (0, 1], got 0.0"),
        ({"gamma": 1.5}, ValueError, "gamma must be in (0, 1], got 1.5"),
        ({"gamma": float("nan")}, ValueError, "gamma must be in (0, 1], got nan"),
        ({"gamma": "0.99"}, TypeError, "gamma must be a real number in (0, 1], got str '0.99'"),
        ({"clip_obs": 0.0}, ValueError, "clip_obs must be > 0, got 0.0"),
        ({"clip_reward": -1}, ValueError, "clip_reward must be > 0, got -1"),
        (
            {"vec_env": "thread"},
            ValueError,
            "vec_env must be one of ('dummy', 'subproc'), got 'thread'",
        ),
        (
            {"env_kwargs": {"render_mode": "human"}},
            ValueError,
            (
                "env_kwargs must not set render_mode: make_vec_env builds envs without rendering "
                "and without gymnasium's env checker"
            ),
        ),
    ],
)
def test_bad_arguments_raise_one_line_naming_the_argument(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        make_vec_env("Pendulum", **kwargs)


def test_numpy_integers_are_accepted_as_seed_and_n_envs() -> None:
    venv = make_vec_env("Pendulum", n_envs=np.int64(2), seed=np.int64(4))

    np.testing.assert_array_equal(venv.reset(), make_vec_env("Pendulum", 2, 4).reset())


def test_unknown_name_is_rejected_before_building() -> None:
    with pytest.raises(
        ValueError, match=r"^unknown environment 'Pendullum'; did you mean Pendulum"
    ):
        make_vec_env("Pendullum")


def test_same_seed_gives_identical_trajectories() -> None:
    # Random CartPole actions end episodes quickly, so the auto-resets are covered too.
    actions = np.random.default_rng(0).integers(0, 2, size=(80, 2))
    first = _rollout(make_vec_env("CartPole", n_envs=2, seed=7), actions)
    second = _rollout(make_vec_env("CartPole", n_envs=2, seed=7), actions)

    assert first[2].any()
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)


def test_different_seeds_give_different_first_observations() -> None:
    first = make_vec_env("Pendulum", n_envs=2, seed=0).reset()
    other = make_vec_env("Pendulum", n_envs=2, seed=1000).reset()

    assert not np.any(np.all(first == other, axis=1))


def test_env_i_is_seeded_with_seed_plus_i() -> None:
    pair = make_vec_env("Pendulum", n_envs=2, seed=10)
    single = make_vec_env("Pendulum", n_envs=1, seed=11)

    obs = pair.reset()

    np.testing.assert_array_equal(obs[1], single.reset()[0])
    assert not np.array_equal(obs[0], obs[1])


def test_action_spaces_are_seeded_with_seed_plus_i() -> None:
    pair = make_vec_env("Pendulum", n_envs=2, seed=10)
    again = make_vec_env("Pendulum", n_envs=2, seed=10)
    single = make_vec_env("Pendulum", n_envs=1, seed=11)

    samples = [env.action_space.sample() for env in pair.envs]
    np.testing.assert_array_equal(samples, [env.action_space.sample() for env in again.envs])
    np.testing.assert_array_equal(samples[1], single.envs[0].action_space.sample())


def test_subproc_matches_dummy() -> None:
    actions = np.random.default_rng(1).integers(0, 2, size=(40, 2))
    subproc = make_vec_env("CartPole", n_envs=2, seed=3, vec_env="subproc")
    try:
        from_subproc = _rollout(subproc, actions)
    finally:
        subproc.close()
    from_dummy = _rollout(make_vec_env("CartPole", n_envs=2, seed=3), actions)

    for a, b in zip(from_subproc, from_dummy, strict=True):
        np.testing.assert_array_equal(a, b)


def test_episode_return_in_info_is_the_raw_return_under_reward_normalization() -> None:
    venv = make_vec_env("Pendulum", n_envs=1, seed=0, normalize_reward=True)
    rng = np.random.default_rng(0)
    venv.reset()
    raw_total, normalized_total = 0.0, 0.0
    for _ in range(200):
        _, reward, done, infos = venv.step(rng.uniform(-2.0, 2.0, size=(1, 1)))
        raw_total += float(venv.get_original_reward()[0])
        normalized_total += float(reward[0])

    assert done[0]
    # VecMonitor accumulates in float32, hence the relative tolerance.
    assert infos[0]["episode"]["r"] == pytest.approx(raw_total, rel=1e-5)
    assert infos[0]["episode"]["l"] == 200
    assert normalized_total != pytest.approx(raw_total, rel=1e-2)


def test_time_limit_marks_truncation_with_terminal_observation() -> None:
    venv = make_vec_env("Pendulum", n_envs=1, seed=0)
    venv.reset()
    action = np.zeros((1, 1), dtype=np.float32)
    for _ in range(199):
        _, _, done, infos = venv.step(action)
        assert not done[0]
        assert not infos[0].get("TimeLimit.truncated", False)

    obs, _, done, infos = venv.step(action)

    assert done[0]
    assert infos[0]["TimeLimit.truncated"] is True
    assert infos[0]["terminal_observation"].shape == venv.observation_space.shape
    assert not np.array_equal(infos[0]["terminal_observation"], obs[0])


def test_lean_running_moments_are_sb3s_bit_for_bit() -> None:
    from stable_baselines3.common.running_mean_std import RunningMeanStd

    from envs.factory import LeanRunningMeanStd

    rng = np.random.default_rng(0)
    ref, lean = RunningMeanStd(shape=(5,)), LeanRunningMeanStd(shape=(5,))
    for _ in range(300):
        batch = rng.normal(3.0, 2.0, size=(int(rng.integers(1, 4)), 5))
        ref.update(batch)
        lean.update(batch)
    assert np.array_equal(ref.mean, lean.mean)
    assert np.array_equal(ref.var, lean.var)
    assert ref.count == lean.count


def _pendulum() -> gymnasium.Env:
    return gymnasium.make("Pendulum-v1")


def _assert_same_trajectories(ours: VecEnv, ref: VecEnv, seed: int) -> None:
    """Same seed, same actions: identical observations, rewards, dones, infos and dtypes."""
    ours.seed(seed)
    ref.seed(seed)
    assert np.array_equal(ours.reset(), ref.reset())
    actions = np.random.default_rng(seed).uniform(-2, 2, size=(450, 2, 1)).astype(np.float32)
    for a in actions:
        o1, r1, d1, i1 = ours.step(a)
        o2, r2, d2, i2 = ref.step(a)
        assert o1.dtype == o2.dtype and np.array_equal(o1, o2)
        assert r1.dtype == r2.dtype and np.array_equal(r1, r2)
        assert np.array_equal(d1, d2)
        for x, y in zip(i1, i2):
            assert x.keys() == y.keys()
            if "terminal_observation" in x:
                assert np.array_equal(x["terminal_observation"], y["terminal_observation"])


def test_in_process_vec_env_matches_sb3_dummy_vec_env() -> None:
    from envs.factory import InProcessVecEnv

    ours = InProcessVecEnv([_pendulum, _pendulum])
    _assert_same_trajectories(ours, DummyVecEnv([_pendulum, _pendulum]), seed=5)
    # Observations are copies: a caller writing into one must not change the env's buffer.
    obs = ours.step(np.zeros((2, 1), dtype=np.float32))[0]
    assert not np.shares_memory(obs, ours.buf_obs[None])
    assert not np.shares_memory(ours.reset(), ours.buf_obs[None])


def test_lean_vec_normalize_matches_sb3_bit_for_bit() -> None:
    from envs.factory import LeanVecNormalize

    kw = dict(norm_obs=True, norm_reward=True, gamma=0.9, clip_obs=1.5, clip_reward=2.0)
    lean = LeanVecNormalize(DummyVecEnv([_pendulum, _pendulum]), **kw)
    ref = VecNormalize(DummyVecEnv([_pendulum, _pendulum]), **kw)
    _assert_same_trajectories(lean, ref, seed=3)
    assert np.array_equal(lean.obs_rms.var, ref.obs_rms.var)
    assert np.array_equal(lean.ret_rms.var, ref.ret_rms.var)
