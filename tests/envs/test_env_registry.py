"""Tests for envs.registry: short names, newest versions, pass-through ids, error messages."""

from __future__ import annotations

import importlib.util
import re

import gymnasium
import pytest
from gymnasium.envs.registration import EnvSpec

from envs import SHORT_NAMES, resolve_env_id, short_names

BOX2D_INSTALLED = importlib.util.find_spec("Box2D") is not None


def _registered_versions(short_name: str) -> list[int]:
    """Versions N with ``{short_name}-vN`` registered, parsed independently of envs.registry."""
    pattern = re.compile(rf"{re.escape(short_name)}-v(\d+)")
    return [
        int(match.group(1))
        for env_id in gymnasium.envs.registry
        if (match := pattern.fullmatch(env_id)) is not None
    ]


@pytest.mark.parametrize("short_name", ["HalfCheetah", "Hopper", "Pendulum", "CartPole"])
def test_short_name_resolves_to_newest_registered_version(short_name: str) -> None:
    resolved = resolve_env_id(short_name)

    assert resolved in gymnasium.envs.registry
    name, version = resolved.rsplit("-v", 1)
    assert name == short_name
    assert int(version) == max(_registered_versions(short_name))


def test_newest_version_is_read_from_the_registry_at_call_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    entry_point = gymnasium.envs.registry["Pendulum-v1"].entry_point
    spec = EnvSpec(id="Pendulum-v99", entry_point=entry_point)
    monkeypatch.setitem(gymnasium.envs.registry, "Pendulum-v99", spec)

    assert resolve_env_id("Pendulum") == "Pendulum-v99"


def test_namespaced_ids_are_not_versions_of_a_short_name(monkeypatch: pytest.MonkeyPatch) -> None:
    entry_point = gymnasium.envs.registry["Pendulum-v1"].entry_point
    spec = EnvSpec(id="other/Pendulum-v99", entry_point=entry_point)
    monkeypatch.setitem(gymnasium.envs.registry, "other/Pendulum-v99", spec)

    assert resolve_env_id("Pendulum") == f"Pendulum-v{max(_registered_versions('Pendulum'))}"


@pytest.mark.parametrize(
    ("spelling", "short_name"),
    [("halfcheetah", "HalfCheetah"), ("HALFCHEETAH", "HalfCheetah"), ("cartPole", "CartPole")],
)
def test_short_names_match_case_insensitively(spelling: str, short_name: str) -> None:
    assert resolve_env_id(spelling) == resolve_env_id(short_name)


def test_every_registered_id_passes_through_unchanged() -> None:
    for env_id in gymnasium.envs.registry:
        assert resolve_env_id(env_id) == env_id


def test_old_versions_pass_through() -> None:
    assert resolve_env_id("HalfCheetah-v4") == "HalfCheetah-v4"
    assert resolve_env_id("CartPole-v0") == "CartPole-v0"


def test_unknown_name_message_suggests_the_close_short_name() -> None:
    with pytest.raises(ValueError, match=r"did you mean HalfCheetah\b") as error:
        resolve_env_id("HalfCheeta")

    message = str(error.value)
    assert message.startswith("unknown environment 'HalfCheeta'; did you mean HalfCheetah")
    assert "\n" not in message
    assert "(short names: HalfCheetah, Hopper, Walker2d, Ant, Humanoid, Swimmer," in message
    assert message.endswith("; or any registered gymnasium id)")
    suggestions = message.split("did you mean ", 1)[1].split("?", 1)[0].split(", ")
    assert 1 <= len(suggestions) <= 3
    assert all(s in short_names() or s in gymnasium.envs.registry for s in suggestions)


def test_unknown_name_suggestions_ignore_case() -> None:
    with pytest.raises(
        ValueError, match=r"^unknown environment 'cartpol'; did you mean CartPole\b"
    ):
        resolve_env_id("cartpol")
    with pytest.raises(ValueError, match=r"did you mean CartPole-v1\b"):
        resolve_env_id("cartpole-v1")


def test_unknown_name_without_close_match_lists_short_names_only() -> None:
    with pytest.raises(ValueError) as error:
        resolve_env_id("xyzzy")

    assert str(error.value) == (
        f"unknown environment 'xyzzy' (short names: {', '.join(short_names())}; "
        "or any registered gymnasium id)"
    )


@pytest.mark.skipif(BOX2D_INSTALLED, reason="Box2D installed: LunarLander is a short name")
def test_lunar_lander_without_box2d_is_unknown_and_says_why() -> None:
    assert "LunarLander" not in short_names()
    with pytest.raises(ValueError, match=r"^unknown environment 'LunarLander'; .*needs Box2D"):
        resolve_env_id("LunarLander")


@pytest.mark.skipif(not BOX2D_INSTALLED, reason="Box2D not installed")
def test_lunar_lander_with_box2d_resolves() -> None:
    assert (
        resolve_env_id("lunarlander") == f"LunarLander-v{max(_registered_versions('LunarLander'))}"
    )


def test_short_names_are_the_documented_ones_that_are_registered() -> None:
    assert set(short_names()) <= set(SHORT_NAMES)
    assert all(_registered_versions(name) for name in short_names())
    assert "HalfCheetah" in short_names() and "CartPole" in short_names()


def test_non_string_name_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"^name must be a str, got int 3$"):
        resolve_env_id(3)  # type: ignore[arg-type]
