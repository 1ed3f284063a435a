"""Validated hyperparameters of the Shampoo optimizer."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from rl_ig.optim.kfac_config import _check, _check_choice, _check_freq

GRAFTING = ("adam", "adagrad", "sgd", "none")


def _check_betas(betas: Any) -> None:
    if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
    _check("betas[0] (beta1)", betas[0], lambda x: 0 <= x < 1, "in [0, 1)")
    _check("betas[1] (beta2)", betas[1], lambda x: 0 < x <= 1, "in (0, 1]")


@dataclass(kw_only=True, frozen=True)
class ShampooConfig:
    """Hyperparameters of :class:`rl_ig.optim.Shampoo`; see its docstring for their meaning.

    Every field is also a ``param_groups`` key, so a group may override it (and an LR scheduler
    may edit ``lr``); :meth:`from_group` validates such a group.

    Raises:
        ValueError: naming the field and its allowed range, for any value outside it.
    """

    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 1.0)
    epsilon: float = 1e-12
    weight_decay: float = 0.0
    precondition_frequency: int = 10
    start_preconditioning_step: int = 10
    max_preconditioner_dim: int = 1024
    grafting: str = "adam"
    grafting_beta2: float = 0.999
    grafting_epsilon: float = 1e-8

    def __post_init__(self) -> None:
        # Comparisons are False for NaN, so NaN is rejected along with out-of-range values.
        _check("lr", self.lr, lambda x: 0 <= x < math.inf, "a finite number >= 0")
        _check_betas(self.betas)
        _check("epsilon", self.epsilon, lambda x: 0 < x < math.inf, "a finite number > 0")
        _check("weight_decay", self.weight_decay, lambda x: 0 <= x < math.inf, "a number >= 0")
        _check_freq("precondition_frequency", self.precondition_frequency)
        _check_freq("start_preconditioning_step", self.start_preconditioning_step)
        _check_freq("max_preconditioner_dim", self.max_preconditioner_dim)
        _check_choice("grafting", self.grafting, GRAFTING)
        _check("grafting_beta2", self.grafting_beta2, lambda x: 0 <= x < 1, "in [0, 1)")
        _check(
            "grafting_epsilon",
            self.grafting_epsilon,
            lambda x: 0 < x < math.inf,
            "a finite number > 0",
        )

    def group_defaults(self) -> dict[str, Any]:
        """The per-group hyperparameters (``param_groups`` keys and their values)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_group(cls, group: dict[str, Any]) -> ShampooConfig:
        """Validate a parameter group's hyperparameters (the group's own or the defaults)."""
        return cls(**{f.name: group[f.name] for f in fields(cls)})
