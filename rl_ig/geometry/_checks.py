"""Argument checks shared by the geometry diagnostics: one-line messages naming the argument."""

from __future__ import annotations

import torch


def check_int(name: str, value: object, minimum: int) -> None:
    """Raise ``ValueError`` unless ``value`` is an ``int`` (not a bool) ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def check_nonnegative(name: str, value: float) -> None:
    """Raise ``ValueError`` unless ``value >= 0`` (NaN fails too)."""
    if not value >= 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")


def check_vector(name: str, v: object, dim: int | None = None) -> None:
    """Raise unless ``v`` is a flat tensor ``(n,)``, with ``n == dim`` when ``dim`` is given."""
    if not isinstance(v, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(v).__name__}")
    if v.dim() != 1 or (dim is not None and v.numel() != dim):
        size = f"{dim} entries (one per parameter)" if dim is not None else "(n,) entries"
        raise ValueError(
            f"{name} must be a flat vector of {size}, got shape {tuple(v.shape)}; "
            f"use torch.nn.utils.parameters_to_vector"
        )


def check_pair(name_a: str, a: object, name_b: str, b: object) -> None:
    """Raise unless ``a`` and ``b`` are flat tensors of the same length."""
    check_vector(name_a, a)
    check_vector(name_b, b)
    assert isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)
    if a.numel() != b.numel():
        raise ValueError(
            f"{name_a} and {name_b} must have the same length, got {a.numel()} and {b.numel()}"
        )


def check_obs(obs: object) -> None:
    """Raise unless ``obs`` is a tensor ``(B, ...)`` with ``B >= 1`` states."""
    if not isinstance(obs, torch.Tensor):
        raise TypeError(f"obs must be a torch.Tensor (B, obs_dim), got {type(obs).__name__}")
    if obs.dim() < 1 or obs.shape[0] < 1:
        raise ValueError(f"obs must hold at least one state (B >= 1), got shape {tuple(obs.shape)}")
