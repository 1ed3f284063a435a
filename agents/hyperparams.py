"""Tuned defaults per algorithm and environment, command-line overrides, and their merge.

The defaults live in ``agents/hyperparams.yaml`` under rl-baselines3-zoo's names, so a zoo
block can be pasted as is. A set of hyperparameters mixes two kinds of keys:

- run-level keys (:data:`RUN_KEYS`): how many environments, how many steps, whether to
  normalise; they become a :class:`RunSettings`;
- everything else, which goes to the agent's configuration class (``build_config`` checks it).

Typical use (what ``scripts/train.py`` does)::

    hp = merge_hyperparameters(default_hyperparameters("trpo", "HalfCheetah"),
                               parse_overrides(["max_kl=0.02"]), aliases=TRPO.aliases)
    run, agent_hp = split_hyperparameters(hp)

Every bad input raises a one-line ``ValueError`` or ``TypeError`` that names the key.
"""

from __future__ import annotations

import ast
import copy
import functools
import numbers
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from gymnasium.envs.registration import parse_env_id

from envs import resolve_env_id

HYPERPARAMS_FILE = Path(__file__).with_name("hyperparams.yaml")
"""The tuned defaults shipped with rl-ig."""

RUN_KEYS: tuple[str, ...] = ("n_envs", "n_timesteps", "normalize", "policy")
"""Zoo keys that describe the run rather than the agent. ``policy`` is run-level only as a
string (zoo's ``policy: MlpPolicy``, accepted and ignored); a mapping is the agent's network."""

DEFAULT_KEY = "default"
_SUPPORTED_POLICIES: tuple[str, ...] = ("MlpPolicy",)
_NORMALIZE_KEYS: tuple[str, ...] = ("norm_obs", "norm_reward")


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also reads ``1e6`` and ``1e-3`` as floats.

    YAML 1.1 (PyYAML) requires a dot in a float, so a bare ``1e-3`` would be the string
    ``"1e-3"``; people type it on the command line all the time.
    """


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def yaml_value(text: str) -> Any:
    """Parse one YAML value (``0.02``, ``1e6``, ``false``, ``{pi: [32, 32]}``) safely."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader


# -- the defaults file -----------------------------------------------------------------------


@functools.cache
def _load_table(path: Path) -> dict[str, dict[str, dict[str, Any]]]:
    try:
        table = yaml.load(path.read_text(), Loader=_Loader)  # noqa: S506
    except yaml.YAMLError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ValueError(f"{path} is not valid YAML: {first}") from None
    if not isinstance(table, dict):
        raise ValueError(f"{path} must map algorithm names to sections, got {type(table).__name__}")
    for algo, section in table.items():
        if not isinstance(section, dict):
            raise ValueError(f"{path}: section {algo!r} must map environment names to entries")
        for env, entry in section.items():
            if not isinstance(entry, dict):
                raise ValueError(f"{path}: entry {algo}.{env} must be a mapping of hyperparameters")
    return table


def _env_keys(env_name: str) -> tuple[str, str]:
    """``(gymnasium id, short name)`` for a short name or id: ``HalfCheetah-v5, HalfCheetah``."""
    env_id = resolve_env_id(env_name)
    namespace, name, _ = parse_env_id(env_id)
    return env_id, name if namespace is None else f"{namespace}/{name}"


def default_hyperparameters(
    algo: str, env_name: str, path: str | Path = HYPERPARAMS_FILE
) -> dict[str, Any]:
    """The tuned hyperparameters of ``algo`` on ``env_name``, under rl-zoo's names.

    The entry is looked up by gymnasium id (``HalfCheetah-v4``), then by the short name the env
    resolves to (``HalfCheetah-v5`` -> ``HalfCheetah``); it is merged over the section's
    ``default:`` entry, which alone applies to environments not listed.

    Args:
        algo: a section of the file (``"trpo"``).
        env_name: a short name or registered gymnasium id.
        path: the YAML file; rl-ig's own by default.

    Returns:
        A fresh dict (safe to modify).

    Raises:
        ValueError: for an unknown algorithm section or environment, or a malformed file.
    """
    table = _load_table(Path(path))
    if algo not in table:
        raise ValueError(
            f"no hyperparameters for algo {algo!r} in {path} "
            f"(sections: {', '.join(map(str, table))}); add a {algo}: section with a default:"
        )
    section = table[algo]
    env_id, short = _env_keys(env_name)
    entry = section.get(env_id, section.get(short, {}))
    return copy.deepcopy({**section.get(DEFAULT_KEY, {}), **entry})


# -- command-line overrides ------------------------------------------------------------------


def parse_override(item: str) -> tuple[str, Any]:
    """``"max_kl=0.02"`` -> ``("max_kl", 0.02)``; the value is parsed as YAML.

    Raises:
        ValueError: if ``item`` has no ``=``, an empty key, or a value that is not valid YAML.
    """
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(f"--hp {item!r} is not of the form key=value (e.g. --hp max_kl=0.02)")
    try:
        return key, yaml_value(text)
    except yaml.YAMLError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ValueError(f"--hp {key}: value {text!r} is not valid YAML ({first})") from None


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``--hp key=value`` items as a dict, later items winning; see :func:`parse_override`."""
    return dict(parse_override(item) for item in items)


def canonical_names(hp: Mapping[str, Any], aliases: Mapping[str, str]) -> dict[str, Any]:
    """``hp`` with alias keys (``target_kl``) renamed to field names (``max_kl``).

    Raises:
        ValueError: if a field is given under two names.
    """
    out: dict[str, Any] = {}
    given_as: dict[str, str] = {}
    for key, value in hp.items():
        name = aliases.get(key, key)
        if name in out:
            raise ValueError(
                f"hyperparameter {name} is given twice (as {given_as[name]!r} and {key!r})"
            )
        out[name], given_as[name] = value, key
    return out


def merge_hyperparameters(
    base: Mapping[str, Any],
    overrides: Mapping[str, Any],
    aliases: Mapping[str, str] | None = None,
    conventions: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """``overrides`` over ``base``, both with aliases resolved.

    ``conventions`` pairs names that set one quantity in two libraries' conventions
    (``{"target_kl": "max_kl"}``): an override under either name replaces both in ``base``.
    """
    aliases = aliases or {}
    merged = canonical_names(_zoo_conventions(base), aliases)
    extra = canonical_names(_zoo_conventions(overrides), aliases)
    for theirs, ours in (conventions or {}).items():
        if theirs in extra or ours in extra:
            merged.pop(theirs, None)
            merged.pop(ours, None)
    return {**merged, **extra}


# -- run-level settings ----------------------------------------------------------------------


def _literal(node: ast.expr) -> Any:
    """A Python literal, ``dict(k=v)`` or a dotted name (``nn.ReLU`` -> ``"nn.ReLU"``)."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict":
        if node.args or any(kw.arg is None for kw in node.keywords):
            raise ValueError("dict(...) takes keyword arguments only")
        return {kw.arg: _literal(kw.value) for kw in node.keywords}
    if isinstance(node, ast.Attribute):
        return f"{ast.unparse(node.value)}.{node.attr}"
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise ValueError("** is not allowed")
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values)}  # type: ignore[arg-type]
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(item) for item in node.elts]
    return ast.literal_eval(node)


def zoo_literal(name: str, text: str) -> Any:
    """Parse rl-zoo's Python-literal strings safely, without ``eval``.

    Accepts ``"{'norm_obs': True}"`` and ``"dict(net_arch=dict(pi=[64]), activation_fn=nn.ReLU)"``
    (names such as ``nn.ReLU`` become strings).

    Raises:
        ValueError: naming ``name`` if ``text`` is anything else.
    """
    try:
        return _literal(ast.parse(text.strip(), mode="eval").body)
    except (SyntaxError, ValueError, TypeError):
        raise ValueError(
            f"{name} {text!r} is not a Python literal such as {{'key': value}} or dict(key=value)"
        ) from None


def parse_normalize(value: Any) -> tuple[bool, bool]:
    """rl-zoo's ``normalize`` as ``(normalize_obs, normalize_reward)``.

    ``true``/``false`` switch both; a mapping (or its string form
    ``"{'norm_obs': True, 'norm_reward': False}"``) sets each, a missing one being ``True`` as
    in SB3's ``VecNormalize``.
    """
    expected = "true, false or a mapping such as {norm_obs: true, norm_reward: false}"
    if isinstance(value, bool):
        return value, value
    if isinstance(value, str):
        try:
            value = zoo_literal("normalize", value)
        except ValueError:
            raise ValueError(f"normalize must be {expected}, got {value!r}") from None
    if not isinstance(value, Mapping):
        raise TypeError(f"normalize must be {expected}, got {value!r}")
    unknown = [key for key in value if key not in _NORMALIZE_KEYS]
    if unknown:
        raise ValueError(
            f"normalize: unsupported key {unknown[0]!r} (supported: {', '.join(_NORMALIZE_KEYS)})"
        )
    flags = {key: value.get(key, True) for key in _NORMALIZE_KEYS}
    for key, flag in flags.items():
        if not isinstance(flag, bool):
            raise TypeError(f"normalize: {key} must be true or false, got {flag!r}")
    return flags["norm_obs"], flags["norm_reward"]


def _positive_int(name: str, value: Any) -> int:
    """``value`` as an int >= 1; an integral float (``1e6``) is accepted."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= 1, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


@dataclass(kw_only=True, frozen=True)
class RunSettings:
    """How to run an agent: the run-level part of a set of hyperparameters.

    Attributes:
        n_envs: parallel environments, >= 1.
        n_timesteps: environment steps to train for (summed over environments), >= 1.
        normalize_obs: normalise observations with running statistics (VecNormalize).
        normalize_reward: scale rewards by the running std of the discounted return.
    """

    n_envs: int = 1
    n_timesteps: int = 100_000
    normalize_obs: bool = False
    normalize_reward: bool = False

    def __post_init__(self) -> None:
        for name in ("n_envs", "n_timesteps"):
            object.__setattr__(self, name, _positive_int(name, getattr(self, name)))
        for name in ("normalize_obs", "normalize_reward"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be true or false, got {getattr(self, name)!r}")


def _zoo_conventions(hp: Mapping[str, Any]) -> dict[str, Any]:
    """Drop zoo's ``policy: MlpPolicy`` and parse a ``policy_kwargs`` string into a mapping.

    Raises:
        ValueError: for a policy class other than ``MlpPolicy``.
    """
    out: dict[str, Any] = {}
    for key, value in hp.items():
        if key == "policy" and isinstance(value, str):
            if value not in _SUPPORTED_POLICIES:
                raise ValueError(
                    f"policy {value!r} is not supported: rl-ig agents use MlpPolicy; "
                    "set the network with policy_kwargs={pi: [64, 64], vf: [64, 64]}"
                )
            continue
        out[key] = (
            zoo_literal(key, value) if key == "policy_kwargs" and isinstance(value, str) else value
        )
    return out


def split_hyperparameters(hp: Mapping[str, Any]) -> tuple[RunSettings, dict[str, Any]]:
    """Separate run-level keys from the agent's hyperparameters.

    ``policy: MlpPolicy`` is dropped; a zoo ``policy_kwargs`` string (``"dict(...)"``) is parsed
    into a mapping. Agent keys are passed on unchecked: the agent's ``build_config`` checks them.

    Returns:
        ``(run settings, agent hyperparameters)``.

    Raises:
        ValueError, TypeError: for a bad run-level value, naming the key.
    """
    run: dict[str, Any] = {}
    agent: dict[str, Any] = {}
    for key, value in _zoo_conventions(hp).items():
        if key in ("n_envs", "n_timesteps"):
            run[key] = value
        elif key == "normalize":
            run["normalize_obs"], run["normalize_reward"] = parse_normalize(value)
        else:
            agent[key] = value
    return RunSettings(**run), agent
