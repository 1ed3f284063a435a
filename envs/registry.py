"""Short environment names resolved to registered gymnasium ids.

A short name (``HalfCheetah``) stands for the newest registered version of that environment
(``HalfCheetah-v5`` with gymnasium 1.x). Versions are read from ``gymnasium.envs.registry`` at
call time, so a gymnasium upgrade that registers ``-v6`` is picked up without a code change.
"""

from __future__ import annotations

import difflib
import functools
import importlib

import gymnasium

SHORT_NAMES: tuple[str, ...] = (
    "HalfCheetah",
    "Hopper",
    "Walker2d",
    "Ant",
    "Humanoid",
    "Swimmer",
    "InvertedPendulum",
    "InvertedDoublePendulum",
    "Reacher",
    "Pendulum",
    "CartPole",
    "Acrobot",
    "MountainCarContinuous",
    "LunarLander",
)
"""Every short name rl-ig knows; :func:`short_names` lists those usable in this install."""

# Short names whose environments need an optional module beyond gymnasium's registry entry,
# with the pip requirement that provides it.
_REQUIRED_MODULE: dict[str, tuple[str, str]] = {"LunarLander": ("Box2D", "gymnasium[box2d]")}

_MAX_SUGGESTIONS = 3


@functools.cache
def _module_importable(module: str) -> bool:
    """Whether ``module`` imports; cached because a failed import is slow to repeat."""
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def newest_version(short_name: str) -> int | None:
    """The largest ``N`` such that ``{short_name}-vN`` is registered, or None if none is.

    Only ids without a namespace count (``phys2d/Pendulum-v0`` is not a ``Pendulum`` version).

    Args:
        short_name: An environment name without namespace or version, e.g. ``"HalfCheetah"``.

    Returns:
        The newest registered version number, or None.
    """
    versions = [
        spec.version
        for spec in gymnasium.envs.registry.values()
        if spec.namespace is None and spec.name == short_name and spec.version is not None
    ]
    return max(versions, default=None)


def short_names() -> tuple[str, ...]:
    """The short names usable in this install, in :data:`SHORT_NAMES` order.

    A short name is usable when some version of it is registered and, for environments with an
    optional dependency (``LunarLander`` needs ``Box2D``), that dependency imports.
    """
    return tuple(
        name
        for name in SHORT_NAMES
        if newest_version(name) is not None
        and (name not in _REQUIRED_MODULE or _module_importable(_REQUIRED_MODULE[name][0]))
    )


def _close_matches(name: str, candidates: list[str]) -> list[str]:
    """Up to three candidates closest to ``name``, compared case-insensitively."""
    by_lower = {candidate.lower(): candidate for candidate in reversed(candidates)}
    matches = difflib.get_close_matches(name.lower(), list(by_lower), n=_MAX_SUGGESTIONS)
    return [by_lower[match] for match in matches]


def _missing_module_hint(name: str) -> str | None:
    """For a short name whose optional module does not import, how to install it."""
    for short, (module, requirement) in _REQUIRED_MODULE.items():
        if name.lower() == short.lower() and not _module_importable(module):
            return f"{short} needs {module}, which does not import (pip install '{requirement}')"
    return None


def _unknown_name_message(name: str, usable: tuple[str, ...]) -> str:
    """One-line error for an unknown environment name, with the closest valid names."""
    missing = _missing_module_hint(name)
    if missing is not None:
        hint = f"; {missing}"
    else:
        matches = _close_matches(name, [*usable, *gymnasium.envs.registry])
        hint = f"; did you mean {', '.join(matches)}?" if matches else ""
    return (
        f"unknown environment {name!r}{hint} "
        f"(short names: {', '.join(usable)}; or any registered gymnasium id)"
    )


def resolve_env_id(name: str) -> str:
    """Resolve a short name or a registered gymnasium id to a gymnasium id.

    Args:
        name: A short name from :func:`short_names`, matched case-insensitively
            (``"halfcheetah"``), or any registered gymnasium id (``"HalfCheetah-v4"``), which is
            returned unchanged.

    Returns:
        The gymnasium id; for a short name, the newest registered version (``"HalfCheetah-v5"``).

    Raises:
        TypeError: If ``name`` is not a string.
        ValueError: If ``name`` is neither; the message lists up to three close matches.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__} {name!r}")
    if name in gymnasium.envs.registry:
        return name
    usable = short_names()
    canonical = {short.lower(): short for short in usable}.get(name.lower())
    if canonical is None:
        raise ValueError(_unknown_name_message(name, usable))
    return f"{canonical}-v{newest_version(canonical)}"
