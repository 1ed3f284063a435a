"""Validated hyperparameters of the K-FAC optimizer."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from rl_ig.optim.kfac_layers import KFACLayer

DAMPING_MODES = ("exact", "factored")
CAPTURE_MODES = ("auto", "explicit")


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check(name: str, value: Any, ok: Callable[[float], bool], allowed: str) -> None:
    if not (_is_real(value) and ok(value)):
        raise ValueError(f"{name} must be {allowed}, got {value!r}")


def _check_freq(name: str, value: Any) -> None:
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if not (is_int and value >= 1):
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")


@dataclass(kw_only=True, frozen=True)
class KFACConfig:
    """Hyperparameters of :class:`rl_ig.optim.KFAC`; see its docstring for their meaning.

    Raises:
        ValueError: naming the field and its allowed range, for any value outside it.
    """

    lr: float = 0.25
    damping: float = 1e-3
    momentum: float = 0.0
    weight_decay: float = 0.0
    factor_decay: float = 0.95
    factor_update_freq: int = 1
    inverse_update_freq: int = 10
    kl_clip: float | None = None
    damping_mode: str = "exact"
    adaptive_damping: bool = False
    damping_adaptation_freq: int = 5
    damping_adaptation_decay: float = 0.95
    min_damping: float = 1e-8
    capture: str = "auto"

    def __post_init__(self) -> None:
        # Comparisons are False for NaN, so NaN is rejected along with out-of-range values.
        _check("lr", self.lr, lambda x: 0 <= x < math.inf, "a finite number >= 0")
        _check("damping", self.damping, lambda x: 0 < x < math.inf, "a finite number > 0")
        _check("momentum", self.momentum, lambda x: 0 <= x < 1, "in [0, 1)")
        _check("weight_decay", self.weight_decay, lambda x: 0 <= x < math.inf, "a number >= 0")
        _check("factor_decay", self.factor_decay, lambda x: 0 <= x < 1, "in [0, 1)")
        _check_freq("factor_update_freq", self.factor_update_freq)
        _check_freq("inverse_update_freq", self.inverse_update_freq)
        if self.kl_clip is not None:
            _check("kl_clip", self.kl_clip, lambda x: 0 < x < math.inf, "None or a number > 0")
        _check_choice("damping_mode", self.damping_mode, DAMPING_MODES)
        if not isinstance(self.adaptive_damping, bool):
            raise ValueError(
                f"adaptive_damping must be True or False, got {self.adaptive_damping!r}"
            )
        _check_freq("damping_adaptation_freq", self.damping_adaptation_freq)
        omega = self.damping_adaptation_decay
        _check("damping_adaptation_decay", omega, lambda x: 0 < x < 1, "in (0, 1)")
        _check("min_damping", self.min_damping, lambda x: 0 < x < math.inf, "a number > 0")
        _check_choice("capture", self.capture, CAPTURE_MODES)

    def group_defaults(self) -> dict[str, Any]:
        """The per-group hyperparameters (``param_groups`` keys), so LR schedulers can edit them."""
        return {
            "lr": self.lr,
            "damping": self.damping,
            "momentum": self.momentum,
            "weight_decay": self.weight_decay,
            "kl_clip": self.kl_clip,
            "factor_decay": self.factor_decay,
            "damping_mode": self.damping_mode,
        }


def build_param_groups(model: nn.Module, layers: list[KFACLayer]) -> list[dict[str, Any]]:
    """One group per K-FAC layer (``"layer"``: its name), then one for all other parameters."""
    groups: list[dict[str, Any]] = []
    for layer in layers:
        params = [layer.weight] if layer.bias is None else [layer.weight, layer.bias]
        groups.append({"params": params, "layer": layer.name})
    taken = {id(p) for group in groups for p in group["params"]}
    other = [p for p in model.parameters() if p.requires_grad and id(p) not in taken]
    if other:
        groups.append({"params": other, "layer": None})
    return groups


def check_diag_fisher(
    diag_fisher: Mapping[nn.Parameter, float] | None, other: list[torch.Tensor]
) -> dict[int, float]:
    """``{id(parameter): c}`` for "other" parameters with the Fisher block ``c·I``.

    Raises:
        TypeError: if ``diag_fisher`` is not a mapping.
        ValueError: for a key outside the "other" parameters or a value not > 0.
    """
    if diag_fisher is None:
        return {}
    if not isinstance(diag_fisher, Mapping):
        raise TypeError(f"diag_fisher must be a mapping {{parameter: c > 0}}, got {diag_fisher!r}")
    allowed = {id(p) for p in other}
    out = {}
    for p, c in diag_fisher.items():
        if id(p) not in allowed:
            raise ValueError(
                "diag_fisher keys must be trainable parameters of the model outside its "
                "K-FAC layers (those have their own Fisher block)"
            )
        if not _is_real(c) or not 0 < c < math.inf:
            raise ValueError(f"diag_fisher values must be finite numbers > 0, got {c!r}")
        out[id(p)] = float(c)
    return out
