"""Tests for agents.hyperparams: the shipped zoo defaults, lookup, overrides, run settings."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import gymnasium as gym
import pytest
import yaml

from agents import TRPO, TRPOConfig
from agents.common.config import build_config
from agents.hyperparams import (
    HYPERPARAMS_FILE,
    RUN_KEYS,
    RunSettings,
    canonical_names,
    default_hyperparameters,
    merge_hyperparameters,
    parse_normalize,
    parse_overrides,
    split_hyperparameters,
    yaml_value,
    zoo_literal,
)

# rl-baselines3-zoo, hyperparams/trpo.yml, HalfCheetah.
ZOO_TRPO_HALFCHEETAH: dict[str, Any] = {
    "normalize": True,
    "n_envs": 2,
    "n_timesteps": 1e6,
    "batch_size": 128,
    "n_steps": 1024,
    "gamma": 0.99,
    "gae_lambda": 0.95,
    "cg_max_steps": 25,
    "cg_damping": 0.1,
    "n_critic_updates": 20,
    "learning_rate": 1e-3,
    "target_kl": 0.04,
}
MUJOCO = (
    "Hopper",
    "Walker2d",
    "Ant",
    "Swimmer",
    "Humanoid",
    "InvertedPendulum",
    "InvertedDoublePendulum",
    "Reacher",
)
ZOO_POLICY_KWARGS = (
    "dict(log_std_init=-2, ortho_init=False, activation_fn=nn.ReLU, "
    "net_arch=dict(pi=[256, 256], vf=[128]))"
)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hp.yaml"
    path.write_text(text)
    return path


# -- the shipped file --------------------------------------------------------------------------


def test_halfcheetah_defaults_equal_the_zoo_values() -> None:
    hp = default_hyperparameters("trpo", "HalfCheetah")

    assert hp == ZOO_TRPO_HALFCHEETAH
    assert [type(hp[k]) for k in ("n_timesteps", "learning_rate")] == [float, float]


@pytest.mark.parametrize("env", MUJOCO)
def test_other_mujoco_envs_share_the_halfcheetah_block(env: str) -> None:
    assert default_hyperparameters("trpo", env) == ZOO_TRPO_HALFCHEETAH


def test_lookup_uses_the_short_name_a_gymnasium_id_resolves_to() -> None:
    assert default_hyperparameters("trpo", "HalfCheetah-v4") == ZOO_TRPO_HALFCHEETAH
    assert default_hyperparameters("trpo", "halfcheetah") == ZOO_TRPO_HALFCHEETAH


def test_unlisted_env_falls_back_to_default() -> None:
    assert default_hyperparameters("trpo", "Acrobot") == {
        "n_envs": 1,
        "n_timesteps": 1e5,
        "normalize": False,
    }


def test_the_shipped_file_reads_the_same_with_a_plain_yaml_loader() -> None:
    """Numbers are written so that zoo's loader (yaml's own) reads them as numbers too.

    The only strings are zoo's policy_kwargs literals and its ``lin_X`` schedules.
    """
    table = yaml.safe_load(HYPERPARAMS_FILE.read_text())
    assert table == yaml_value(HYPERPARAMS_FILE.read_text())
    strings = [
        (algo, env, key)
        for algo, section in table.items()
        for env, entry in section.items()
        for key, value in entry.items()
        if isinstance(value, str)
        and key != "policy_kwargs"
        and not re.fullmatch(r"lin_[0-9.]+(e-?[0-9]+)?", value)
    ]
    assert strings == []


def test_returned_dicts_are_fresh_copies() -> None:
    default_hyperparameters("trpo", "HalfCheetah")["n_steps"] = 1
    assert default_hyperparameters("trpo", "HalfCheetah")["n_steps"] == 1024


def test_zoo_names_map_to_trpo_fields() -> None:
    # HalfCheetah's 6 action dimensions: sb3-contrib's per-dimension KL radius and damping
    # become rl-ig's per-state ones, 6x larger.
    _, agent_hp = split_hyperparameters(default_hyperparameters("trpo", "HalfCheetah"))
    agent_hp = TRPO.resolve_hyperparameters(agent_hp, gym.spaces.Box(-1.0, 1.0, (6,)))
    config = build_config(TRPOConfig, agent_hp, aliases=TRPO.aliases)

    assert (config.max_kl, config.cg_iters, config.n_steps) == (pytest.approx(0.24), 25, 1024)
    assert (config.n_critic_updates, config.learning_rate) == (20, 1e-3)
    assert config.cg_damping == pytest.approx(0.6)


def test_zoo_convention_is_identity_for_discrete_actions() -> None:
    hp = TRPO.resolve_hyperparameters({"target_kl": 0.01}, gym.spaces.Discrete(3))
    assert hp == {"max_kl": 0.01, "cg_damping": 0.1}
    with pytest.raises(ValueError, match="give max_kl .* or target_kl .*, not both"):
        TRPO.resolve_hyperparameters({"target_kl": 0.01, "max_kl": 0.1}, gym.spaces.Discrete(3))


# -- lookup in other files ---------------------------------------------------------------------


def test_entry_is_merged_over_default_and_a_full_id_wins(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "trpo:\n  default: {n_envs: 1, n_timesteps: 5, max_kl: 0.01}\n"
        "  Pendulum: {n_envs: 4}\n  Pendulum-v1: {n_envs: 8}\n  Acrobot: {max_kl: 0.02}\n",
    )

    assert default_hyperparameters("trpo", "Pendulum", path)["n_envs"] == 8
    assert default_hyperparameters("trpo", "Acrobot", path) == {
        "n_envs": 1,
        "n_timesteps": 5,
        "max_kl": 0.02,
    }


def test_unknown_algo_section_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"no hyperparameters for algo 'ppo'.*sections: trpo"):
        default_hyperparameters("ppo", "Pendulum", _write(tmp_path, "trpo:\n  default: {}\n"))


def test_unknown_env_is_a_one_line_error() -> None:
    with pytest.raises(ValueError, match=r"unknown environment 'HalfCheeta'.*HalfCheetah"):
        default_hyperparameters("trpo", "HalfCheeta")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("trpo: [1, 2]\n", r"section 'trpo' must map environment names"),
        ("trpo:\n  default: 3\n", r"entry trpo.default must be a mapping"),
        ("trpo: {default: [\n", r"is not valid YAML"),
    ],
)
def test_malformed_file_is_a_one_line_error(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        default_hyperparameters("trpo", "Pendulum", _write(tmp_path, text))


# -- overrides ---------------------------------------------------------------------------------


def test_overrides_are_parsed_as_yaml() -> None:
    hp = parse_overrides(
        [
            "max_kl=0.02",
            "learning_rate=3e-4",
            "n_timesteps=1e6",
            "normalize=false",
            "policy_kwargs={pi: [32, 32]}",
            "n_steps=abc",
            "note=a=b",
            "gamma=0.9",
            "gamma=0.95",
        ]
    )

    assert hp == {
        "max_kl": 0.02,
        "learning_rate": 3e-4,
        "n_timesteps": 1e6,
        "normalize": False,
        "policy_kwargs": {"pi": [32, 32]},
        "n_steps": "abc",
        "note": "a=b",
        "gamma": 0.95,
    }


@pytest.mark.parametrize("item", ["max_kl", "=0.02", " =1", ""])
def test_override_without_key_or_equals_names_item_and_form(item: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_overrides(["n_steps=64", item])
    assert str(info.value) == f"--hp {item!r} is not of the form key=value (e.g. --hp max_kl=0.02)"


def test_override_with_invalid_yaml_names_the_key() -> None:
    with pytest.raises(ValueError, match=r"^--hp policy_kwargs: value '\{pi: \[32' is not valid"):
        parse_overrides(["policy_kwargs={pi: [32"])


def test_an_override_replaces_the_zoo_name_it_stands_for() -> None:
    merged = merge_hyperparameters(
        {"target_kl": 0.04, "cg_max_steps": 25, "n_envs": 2},
        parse_overrides(["max_kl=0.02"]),
        aliases=TRPO.aliases,
        conventions=TRPO.conventions,
    )

    assert merged == {"max_kl": 0.02, "cg_iters": 25, "n_envs": 2}


def test_a_field_given_under_two_names_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"cg_iters is given twice \(as 'cg_max_steps' and"):
        canonical_names({"cg_max_steps": 4, "cg_iters": 5}, TRPO.aliases)


# -- run settings ------------------------------------------------------------------------------


def test_split_separates_run_keys_from_agent_keys() -> None:
    run, agent_hp = split_hyperparameters(default_hyperparameters("trpo", "HalfCheetah"))

    assert run == RunSettings(
        n_envs=2, n_timesteps=1_000_000, normalize_obs=True, normalize_reward=True
    )
    assert isinstance(run.n_timesteps, int)
    assert set(agent_hp) == set(ZOO_TRPO_HALFCHEETAH) - set(RUN_KEYS)


def test_split_without_run_keys_gives_the_run_defaults() -> None:
    assert split_hyperparameters({"max_kl": 0.02}) == (RunSettings(), {"max_kl": 0.02})


def test_mlp_policy_is_ignored_and_zoo_policy_kwargs_string_is_parsed() -> None:
    run, agent_hp = split_hyperparameters(
        {"policy": "MlpPolicy", "policy_kwargs": ZOO_POLICY_KWARGS}
    )
    config = build_config(TRPOConfig, agent_hp, aliases=TRPO.aliases)

    assert run == RunSettings()
    assert (config.policy.pi, config.policy.vf) == ((256, 256), (128,))
    assert (config.policy.activation, config.policy.log_std_init) == ("relu", -2.0)
    assert config.policy.ortho_init is False


def test_a_policy_mapping_is_the_agents_network() -> None:
    _, agent_hp = split_hyperparameters(parse_overrides(["policy={pi: [32]}"]))
    assert agent_hp == {"policy": {"pi": [32]}}


def test_other_policy_classes_are_rejected() -> None:
    with pytest.raises(ValueError, match=r"^policy 'CnnPolicy' is not supported.*policy_kwargs"):
        split_hyperparameters({"policy": "CnnPolicy"})


def test_mlp_policy_next_to_policy_kwargs_does_not_clash_in_a_merge() -> None:
    merged = merge_hyperparameters(
        {"policy": "MlpPolicy", "policy_kwargs": "dict(net_arch=[32])"}, {}, TRPO.aliases
    )
    assert merged == {"policy": {"net_arch": [32]}}


@pytest.mark.parametrize(
    ("value", "flags"),
    [
        (True, (True, True)),
        (False, (False, False)),
        ({"norm_obs": True, "norm_reward": False}, (True, False)),
        ({"norm_reward": False}, (True, False)),
        ("{'norm_obs': True, 'norm_reward': False}", (True, False)),
        ("{'norm_obs': False}", (False, True)),
        ("dict(norm_obs=False, norm_reward=False)", (False, False)),
    ],
)
def test_normalize_forms(value: Any, flags: tuple[bool, bool]) -> None:
    assert parse_normalize(value) == flags
    run, _ = split_hyperparameters({"normalize": value})
    assert (run.normalize_obs, run.normalize_reward) == flags


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        ("maybe", ValueError, r"^normalize must be true, false or a mapping.*got 'maybe'"),
        (3, TypeError, r"^normalize must be true, false or a mapping.*got 3"),
        ({"gamma": 0.9}, ValueError, r"^normalize: unsupported key 'gamma'"),
        ({"norm_obs": 1}, TypeError, r"^normalize: norm_obs must be true or false, got 1"),
        ("{'norm_obs': yes}", ValueError, r"^normalize must be true, false"),
    ],
)
def test_bad_normalize_names_the_key(value: Any, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        parse_normalize(value)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"n_envs": 0}, ValueError, r"^n_envs must be an integer >= 1, got 0$"),
        ({"n_envs": True}, TypeError, r"^n_envs must be an integer >= 1, got True$"),
        ({"n_timesteps": "abc"}, TypeError, r"^n_timesteps must be an integer >= 1, got 'abc'$"),
        ({"n_timesteps": 1.5}, TypeError, r"^n_timesteps must be an integer >= 1, got 1.5$"),
        ({"normalize_obs": 1}, TypeError, r"^normalize_obs must be true or false, got 1$"),
    ],
)
def test_bad_run_settings_name_the_key(kwargs: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        RunSettings(**kwargs)


def test_run_settings_accept_exponent_floats() -> None:
    assert RunSettings(n_timesteps=1e6).n_timesteps == 1_000_000


@pytest.mark.parametrize("text", ["__import__('os').system('true')", "dict(**x)", "{**x}", "[1, 2"])
def test_zoo_literal_never_runs_code(text: str) -> None:
    with pytest.raises(ValueError, match=r"^policy_kwargs .* is not a Python literal"):
        zoo_literal("policy_kwargs", text)
