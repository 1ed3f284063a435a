"""Optimizers by name, with ``key=value`` hyperparameter overrides validated up front.

``make_optimizer("kfac", model, lr, {"damping": 1e-2})`` builds ``rl_ig.optim.KFAC(model, ...)``;
``shampoo``, ``adam`` and ``sgd`` are built on ``model.parameters()``. SGD is
``torch.optim.SGD`` with heavy-ball momentum 0.9 unless ``momentum`` is given.

K-FAC takes one setting of its own here, ``fisher``, which picks the curvature its factors
estimate and is not a ``KFAC`` argument:

* ``"sampled"`` (the default): the true Fisher of Martens & Grosse (2015, §5), from the
  gradients of the loss on targets drawn from the model's predictive distribution
  (:data:`~rl_ig.supervised.task.SampleTargets`). ``KFAC`` is built with
  ``capture="explicit"`` and the training loop runs that extra backward pass inside
  ``capture_factors()`` on the steps whose factors are due.
* ``"empirical"``: the factors come from the gradients of the minibatch loss itself
  (``capture="auto"``).

``capture`` follows from ``fisher`` and cannot be set on its own. With the sampled Fisher,
``fisher_subsample=s`` (default 1) reads the factors from every ``s``-th example of the batch
only: the training loop then runs a forward and the sampled backward on that ``1/s`` of the
batch instead of sharing the step's full forward. The gradient still uses the whole batch. The
factors are running averages over many steps, so a fraction of each batch estimates them nearly
as well for a fraction of the cost (Martens & Grosse 2015 likewise estimate the statistics
from a subset of each minibatch).
"""

from __future__ import annotations

import difflib
import inspect
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
import yaml
from torch import nn
from torch.optim import Optimizer

from rl_ig.optim import KFAC, Adam, Shampoo

SGD_MOMENTUM = 0.9
FISHER_ESTIMATES = ("sampled", "empirical")
"""The values of K-FAC's ``fisher`` setting (see the module docstring)."""
DEFAULT_FISHER = "sampled"
TRAINER_SETTINGS = ("fisher", "fisher_subsample")
"""K-FAC settings of the training loop, not ``KFAC`` arguments (see the module docstring)."""
_CAPTURE = {"sampled": "explicit", "empirical": "auto"}


def _kfac(model: nn.Module, lr: float, hp: Mapping[str, Any]) -> Optimizer:
    kwargs = {key: value for key, value in hp.items() if key not in TRAINER_SETTINGS}
    fisher = hp.get("fisher", DEFAULT_FISHER)
    return KFAC(model, lr=lr, capture=_CAPTURE[fisher], **kwargs)


def _shampoo(model: nn.Module, lr: float, hp: Mapping[str, Any]) -> Optimizer:
    return Shampoo(model.parameters(), lr=lr, **hp)


def _adam(model: nn.Module, lr: float, hp: Mapping[str, Any]) -> Optimizer:
    return Adam(model.parameters(), lr=lr, **hp)


def _sgd(model: nn.Module, lr: float, hp: Mapping[str, Any]) -> Optimizer:
    return torch.optim.SGD(model.parameters(), lr=lr, **{"momentum": SGD_MOMENTUM, **hp})


_BUILDERS: dict[str, tuple[Callable[..., Any], Callable[..., Optimizer]]] = {
    "kfac": (KFAC, _kfac),
    "shampoo": (Shampoo, _shampoo),
    "adam": (Adam, _adam),
    "sgd": (torch.optim.SGD, _sgd),
}
OPTIMIZERS = tuple(_BUILDERS)
"""The names :func:`make_optimizer` accepts."""

_NOT_HP = ("self", "model", "params", "lr")


def check_optimizer_name(name: str) -> str:
    """``name`` if it is a known optimizer; a one-line ``ValueError`` with close names otherwise."""
    if name in _BUILDERS:
        return name
    close = difflib.get_close_matches(name.lower(), OPTIMIZERS, n=2)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ValueError(f"unknown optim {name!r}{hint} (choose from: {', '.join(OPTIMIZERS)})")


def hyperparameter_defaults(name: str) -> dict[str, Any]:
    """The constructor's keyword arguments other than the model/params and ``lr``, with their
    defaults (SGD's ``momentum`` is :data:`SGD_MOMENTUM`)."""
    cls, _ = _BUILDERS[check_optimizer_name(name)]
    signature = inspect.signature(cls.__init__)
    out = {
        key: p.default
        for key, p in signature.parameters.items()
        if key not in _NOT_HP and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }
    if name == "sgd":
        out["momentum"] = SGD_MOMENTUM
    if name == "kfac":
        del out["capture"]
        out["fisher"] = DEFAULT_FISHER
        out["fisher_subsample"] = 1
    return out


def kfac_fisher(name: str, hp: Mapping[str, Any]) -> str | None:
    """The Fisher estimate (``"sampled"`` or ``"empirical"``) that optimizer ``name`` with
    ``hp`` uses; None for optimizers other than K-FAC."""
    return str(hp.get("fisher", DEFAULT_FISHER)) if name == "kfac" else None


def fisher_subsample(name: str, hp: Mapping[str, Any]) -> int:
    """Every how many examples of a batch K-FAC's sampled-Fisher factors are read from (1: all;
    see the module docstring)."""
    return int(hp.get("fisher_subsample", 1)) if name == "kfac" else 1


def resolved_hyperparameters(name: str, hp: Mapping[str, Any]) -> dict[str, Any]:
    """``hp`` with the settings that are not K-FAC arguments filled in (``fisher`` for K-FAC),
    so that a run's record says which Fisher it used."""
    fisher = kfac_fisher(name, hp)
    return {**hp, "fisher": fisher} if fisher is not None else dict(hp)


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_hyperparameters(name: str, hp: Mapping[str, Any]) -> None:
    """Check that every key of ``hp`` is a hyperparameter of optimizer ``name`` and that its value
    has the default's type (numbers for numbers, booleans for booleans, integers for integers).

    Raises:
        ValueError: one line naming the key.
    """
    defaults = hyperparameter_defaults(name)
    for key, value in hp.items():
        if key == "lr":
            raise ValueError(f"set the learning rate with --lr, not --hp lr={value!r}")
        if key in TRAINER_SETTINGS and name != "kfac":
            raise ValueError(f"hyperparameter {key} applies to optim kfac only, not {name}")
        if key == "capture" and name == "kfac":
            raise ValueError(
                "hyperparameter capture of optim kfac follows from fisher (sampled: explicit, "
                "empirical: auto); pass --hp fisher=sampled or --hp fisher=empirical"
            )
        if key == "fisher" and value not in FISHER_ESTIMATES:
            raise ValueError(
                f"hyperparameter fisher must be 'sampled' or 'empirical', got {value!r}"
            )
        if key not in defaults:
            close = difflib.get_close_matches(key, list(defaults), n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ValueError(
                f"unknown hyperparameter {key!r} for optim {name}{hint} "
                f"(choose from: {', '.join(defaults)})"
            )
        _check_type(key, value, defaults[key])
    _check_subsample(hp)


def _check_subsample(hp: Mapping[str, Any]) -> None:
    subsample = hp.get("fisher_subsample", 1)
    if subsample < 1:
        raise ValueError(
            f"hyperparameter fisher_subsample must be an integer >= 1, got {subsample}"
        )
    if subsample > 1 and hp.get("fisher", DEFAULT_FISHER) != "sampled":
        raise ValueError(
            "hyperparameter fisher_subsample applies to the sampled Fisher only (the empirical "
            "one is read from the step's own backward); drop it or pass --hp fisher=sampled"
        )


def _check_type(key: str, value: Any, default: Any) -> None:
    if isinstance(default, bool):
        ok, kind = isinstance(value, bool), "true or false"
    elif isinstance(default, int):
        ok, kind = isinstance(value, int) and not isinstance(value, bool), "an integer"
    elif isinstance(default, float):
        ok, kind = _is_real(value), "a number"
    elif isinstance(default, tuple):
        ok, kind = isinstance(value, (list, tuple)), "a list such as [0.9, 0.999]"
    else:
        ok, kind = True, ""
    if not ok:
        raise ValueError(f"hyperparameter {key} must be {kind}, got {value!r}")


def make_optimizer(
    name: str, model: nn.Module, lr: float, hp: Mapping[str, Any] | None = None
) -> Optimizer:
    """The optimizer ``name`` over ``model`` (KFAC hooks its layers; pass the unwrapped module,
    e.g. ``ddp.module``, not a ``DistributedDataParallel`` wrapper).

    Args:
        name: one of :data:`OPTIMIZERS`.
        model: the module to train.
        lr: learning rate, a finite number > 0.
        hp: other constructor keywords, e.g. ``{"damping": 1e-2}`` for K-FAC.

    Raises:
        ValueError: one line, for an unknown name or key, a value of the wrong type, or any
            value the optimizer's constructor rejects.
    """
    check_optimizer_name(name)
    if not (_is_real(lr) and 0 < lr < math.inf):
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    hp = dict(hp or {})
    check_hyperparameters(name, hp)
    _, build = _BUILDERS[name]
    try:
        return build(model, float(lr), hp)
    except (TypeError, ValueError) as exc:
        given = " ".join(f"{key}={value!r}" for key, value in hp.items())
        where = f" with {given}" if given else ""
        raise ValueError(f"optim {name}{where}: {' '.join(str(exc).split())}") from None


# -- key=value overrides -----------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also reads ``1e-3`` as a float (YAML 1.1 wants ``1.0e-3``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def parse_override(item: str) -> tuple[str, Any]:
    """``"damping=1e-2"`` -> ``("damping", 0.01)``; the value is parsed as YAML.

    Raises:
        ValueError: for no ``=``, an empty key, or a value that is not valid YAML.
    """
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(f"--hp {item!r} is not of the form key=value (e.g. --hp damping=0.01)")
    try:
        return key, yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.YAMLError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ValueError(f"--hp {key}: value {text!r} is not valid YAML ({first})") from None


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``--hp`` items as a dict, later items winning."""
    return dict(parse_override(item) for item in items)
