"""Building validated agent configurations from user-typed hyperparameters.

Hyperparameters arrive as keyword arguments, from the YAML defaults or from ``--hp key=value``
on the command line. rl-baselines3-zoo's names are accepted as aliases so that a zoo file can be
used as is. Every bad value gets a one-line ``ValueError``/``TypeError`` naming the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from typing import Any, TypeVar

from agents.common.networks import PolicyConfig

C = TypeVar("C")

# rl-baselines3-zoo / Stable-Baselines3 activation names, as they appear in policy_kwargs.
_ZOO_ACTIVATIONS = {
    "nn.tanh": "tanh",
    "nn.relu": "relu",
    "nn.elu": "elu",
    "nn.leakyrelu": "leaky_relu",
    "nn.gelu": "gelu",
    "nn.silu": "silu",
}


def _check_scalar(name: str, value: Any, kind: type) -> Any:
    if kind is bool:
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be true or false, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # 1e6 written as a float
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an integer, got {value!r}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value!r}")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a string, got {value!r}")
        return value
    raise TypeError(f"{name}: unsupported field type {kind}")


def _coerce(name: str, value: Any, annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None:
            if len(options) < len(typing.get_args(annotation)):
                return None
            raise TypeError(f"{name} must not be null")
        for option in options[:-1]:
            try:
                return _coerce(name, value, option)
            except TypeError:
                continue
        return _coerce(name, value, options[-1])
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"{name} must be a list, got {value!r}")
        return tuple(_coerce(name, v, typing.get_args(annotation)[0]) for v in value)
    if annotation is PolicyConfig:
        return policy_config(value)
    return _check_scalar(name, value, annotation)


def policy_config(value: Any) -> PolicyConfig:
    """A ``PolicyConfig`` from a dict (rl-zoo ``policy_kwargs`` names accepted) or itself."""
    if isinstance(value, PolicyConfig):
        return value
    if not isinstance(value, dict):
        raise TypeError(f"policy must be a mapping such as {{'pi': [64, 64]}}, got {value!r}")
    kw = dict(value)
    arch = kw.pop("net_arch", None)
    if isinstance(arch, dict):
        kw.setdefault("pi", arch.get("pi"))
        kw.setdefault("vf", arch.get("vf"))
    elif isinstance(arch, list):
        kw.setdefault("pi", arch)
        kw.setdefault("vf", arch)
    act = kw.pop("activation_fn", None)
    if act is not None:
        kw["activation"] = _ZOO_ACTIVATIONS.get(str(act).lower(), str(act).lower())
    return build_config(PolicyConfig, {k: v for k, v in kw.items() if v is not None}, "policy.")


def build_config(cls: type[C], hp: dict[str, Any], prefix: str = "", aliases=None) -> C:
    """Validate ``hp`` against the fields of the dataclass ``cls`` and construct it.

    Args:
        cls: a ``@dataclass(kw_only=True, frozen=True)`` configuration class.
        hp: user-typed values by name.
        prefix: prepended to names in messages (``policy.``).
        aliases: ``{other_name: field_name}`` accepted as well.

    Raises:
        ValueError: for an unknown key (with the closest valid names) or an out-of-range value.
        TypeError: for a value of the wrong type.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in hp.items():
        name = (aliases or {}).get(key, key)
        if name not in fields:
            close = difflib.get_close_matches(name, list(fields), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ValueError(
                f"unknown hyperparameter {prefix}{key!r} for {cls.__name__}{hint} "
                f"(valid: {', '.join(fields)})"
            )
        if name in kwargs:
            raise ValueError(f"hyperparameter {prefix}{name} is given twice (once as {key!r})")
        kwargs[name] = _coerce(prefix + name, value, hints[name])
    return cls(**kwargs)


def check_range(
    name: str,
    value: float,
    low: float,
    high: float,
    *,
    open_low: bool = False,
    open_high: bool = False,
) -> None:
    """Raise a one-line ``ValueError`` unless ``value`` lies in the interval described."""
    below = value <= low if open_low else value < low
    above = value >= high if open_high else value > high
    if below or above:
        lo, hi = ("(" if open_low else "["), (")" if open_high else "]")
        raise ValueError(f"{name} must be in {lo}{low}, {high}{hi}, got {value!r}")


def check_positive_int(name: str, value: int) -> None:
    """Raise a one-line ``ValueError`` unless ``value >= 1``."""
    if value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
