"""Tests for envs.normalization: plain-tensor VecNormalize state and evaluation mode."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from stable_baselines3.common.vec_env import VecCheckNan, VecEnv

from envs import (
    find_vec_normalize,
    load_normalization_state,
    make_vec_env,
    normalization_state,
    set_training,
)


def _normalized_pendulum(n_envs: int = 2, seed: int = 0) -> VecEnv:
    return make_vec_env(
        "Pendulum", n_envs=n_envs, seed=seed, normalize_obs=True, normalize_reward=True
    )


def _run(venv: VecEnv, steps: int, seed: int = 0) -> None:
    """Step ``venv`` with uniform random Pendulum torques so its statistics move."""
    rng = np.random.default_rng(seed)
    venv.reset()
    for _ in range(steps):
        venv.step(rng.uniform(-2.0, 2.0, size=(venv.num_envs, 1)))


def _save_and_load(state: dict, path: Path) -> dict:
    torch.save(state, path)
    return torch.load(path, weights_only=True)


def test_state_holds_float64_tensors_floats_and_bools() -> None:
    venv = _normalized_pendulum()
    _run(venv, 10)

    state = normalization_state(venv)

    assert set(state) == {
        *(f"{rms}.{field}" for rms in ("obs_rms", "ret_rms") for field in ("mean", "var", "count")),
        "returns",
        *("clip_obs", "clip_reward", "gamma", "epsilon", "norm_obs", "norm_reward"),
    }
    assert state["obs_rms.mean"].dtype == torch.float64
    assert state["obs_rms.mean"].shape == (3,) and state["obs_rms.var"].shape == (3,)
    assert state["ret_rms.var"].shape == () and state["returns"].shape == (2,)
    assert state["obs_rms.count"] == pytest.approx(2 * 11 + 1e-4)
    np.testing.assert_array_equal(state["obs_rms.mean"].numpy(), venv.obs_rms.mean)
    np.testing.assert_array_equal(state["returns"].numpy(), venv.returns)
    assert (state["gamma"], state["norm_obs"], state["norm_reward"]) == (0.99, True, True)


def test_state_is_a_snapshot() -> None:
    venv = _normalized_pendulum()
    _run(venv, 5)
    state = normalization_state(venv)
    mean = state["obs_rms.mean"].clone()

    _run(venv, 5, seed=1)

    torch.testing.assert_close(state["obs_rms.mean"], mean, rtol=0, atol=0)


def test_round_trip_through_torch_save_gives_identical_normalization(tmp_path: Path) -> None:
    trained = _normalized_pendulum()
    _run(trained, 100)
    raw_obs, raw_reward = trained.get_original_obs(), trained.get_original_reward()

    fresh = _normalized_pendulum(seed=5)
    load_normalization_state(fresh, _save_and_load(normalization_state(trained), tmp_path / "n.pt"))

    assert not np.allclose(trained.obs_rms.mean, 0.0)
    np.testing.assert_array_equal(fresh.normalize_obs(raw_obs), trained.normalize_obs(raw_obs))
    np.testing.assert_array_equal(
        fresh.normalize_reward(raw_reward), trained.normalize_reward(raw_reward)
    )
    after, before = normalization_state(fresh), normalization_state(trained)
    assert after.keys() == before.keys()
    for key, value in before.items():
        if isinstance(value, torch.Tensor):
            torch.testing.assert_close(after[key], value, rtol=0, atol=0)
        else:
            assert after[key] == value


def test_loading_restores_flags_and_settings(tmp_path: Path) -> None:
    trained = make_vec_env("Pendulum", normalize_obs=True, gamma=0.9, clip_obs=3.0)
    fresh = make_vec_env("Pendulum", normalize_reward=True)

    load_normalization_state(fresh, _save_and_load(normalization_state(trained), tmp_path / "n.pt"))

    assert (fresh.norm_obs, fresh.norm_reward) == (True, False)
    assert (fresh.gamma, fresh.clip_obs) == (0.9, 3.0)


def test_returns_are_zeroed_when_the_number_of_envs_differs() -> None:
    trained = _normalized_pendulum(n_envs=2)
    _run(trained, 10)
    single = _normalized_pendulum(n_envs=1)

    load_normalization_state(single, normalization_state(trained))

    np.testing.assert_array_equal(single.returns, np.zeros(1))
    np.testing.assert_array_equal(single.obs_rms.mean, trained.obs_rms.mean)


def test_observation_shape_mismatch_names_both_shapes() -> None:
    pendulum_state = normalization_state(_normalized_pendulum())
    cartpole = make_vec_env("CartPole", normalize_obs=True)

    message = (
        "normalization state 'obs_rms.mean' has shape (3,) but this environment expects (4,); "
        "load the state into an environment of the kind it was saved from"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        load_normalization_state(cartpole, pendulum_state)


def test_missing_keys_are_named() -> None:
    state = normalization_state(_normalized_pendulum())
    del state["returns"], state["obs_rms.var"]

    with pytest.raises(ValueError, match=r"^normalization state is missing returns, obs_rms.var;"):
        load_normalization_state(_normalized_pendulum(), state)


def test_no_vec_normalize_gives_empty_state_and_loads_empty_state() -> None:
    plain = make_vec_env("Pendulum")

    assert find_vec_normalize(plain) is None
    assert normalization_state(plain) == {}
    load_normalization_state(plain, {})


def test_non_empty_state_into_env_without_vec_normalize_is_an_error() -> None:
    state = normalization_state(_normalized_pendulum())

    with pytest.raises(ValueError, match=r"^normalization state is non-empty but the environment"):
        load_normalization_state(make_vec_env("Pendulum"), state)


def test_empty_state_into_normalized_env_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"^normalization state is empty but the environment has"):
        load_normalization_state(_normalized_pendulum(), {})


def test_find_vec_normalize_walks_wrappers() -> None:
    venv = _normalized_pendulum()

    assert find_vec_normalize(venv) is venv
    assert find_vec_normalize(VecCheckNan(venv)) is venv
    assert normalization_state(VecCheckNan(venv)).keys() == normalization_state(venv).keys()


def test_evaluation_mode_freezes_statistics_and_returns_raw_rewards() -> None:
    venv = _normalized_pendulum()
    _run(venv, 20)
    frozen = normalization_state(venv)

    set_training(venv, False)
    _, reward, _, _ = venv.step(np.ones((2, 1), dtype=np.float32))

    assert (venv.training, venv.norm_reward) == (False, False)
    np.testing.assert_array_equal(reward, venv.get_original_reward())
    after = normalization_state(venv)
    torch.testing.assert_close(after["obs_rms.mean"], frozen["obs_rms.mean"], rtol=0, atol=0)
    torch.testing.assert_close(after["ret_rms.var"], frozen["ret_rms.var"], rtol=0, atol=0)
    assert after["norm_reward"] is True  # the configured setting, not the evaluation switch


def test_training_mode_restores_the_configured_reward_normalization() -> None:
    rewards_normalized = _normalized_pendulum()
    obs_only = make_vec_env("Pendulum", normalize_obs=True)

    for venv in (rewards_normalized, obs_only):
        set_training(venv, False)
        set_training(venv, False)
        set_training(venv, True)

    assert (rewards_normalized.training, rewards_normalized.norm_reward) == (True, True)
    assert (obs_only.training, obs_only.norm_reward) == (True, False)


def test_loading_in_evaluation_mode_keeps_rewards_raw() -> None:
    trained = _normalized_pendulum()
    evaluation = make_vec_env("Pendulum", n_envs=2, normalize_obs=True)
    set_training(evaluation, False)

    load_normalization_state(evaluation, normalization_state(trained))

    assert evaluation.norm_reward is False
    set_training(evaluation, True)
    assert evaluation.norm_reward is True


def test_set_training_without_vec_normalize_leaves_the_env_unchanged() -> None:
    plain, untouched = make_vec_env("Pendulum", seed=3), make_vec_env("Pendulum", seed=3)

    set_training(plain, False)

    action = np.ones((1, 1), dtype=np.float32)
    np.testing.assert_array_equal(plain.reset(), untouched.reset())
    np.testing.assert_array_equal(plain.step(action)[1], untouched.step(action)[1])
