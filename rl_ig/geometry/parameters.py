"""Evaluate a policy at another point of parameter space without losing the current one."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch

from rl_ig.geometry._checks import check_vector


def _assign(params: Sequence[torch.Tensor], values: Sequence[torch.Tensor]) -> None:
    with torch.no_grad():
        for p, value in zip(params, values):
            p.copy_(value.view_as(p))


@contextmanager
def at_parameters(params: Sequence[torch.Tensor], theta: torch.Tensor) -> Iterator[None]:
    """Temporarily set the parameters to the flat vector ``theta``; restore them on exit.

    ``theta: (n,)`` follows the ``torch.nn.utils.parameters_to_vector`` layout of ``params``.
    The values are written in place with ``copy_`` under ``torch.no_grad()``, never through
    ``param.data``. ``vector_to_parameters`` is not used because it rebinds ``param.data``
    without bumping the parameters' version counters, so a
    :class:`~rl_ig.fisher.PolicyFisher` would keep serving its cached linearisation from the
    other point; ``copy_`` bumps them, and the parameters never alias ``theta``.

    The saved values are copied back in ``finally``, bit for bit, also when the body raises.
    Because the writes are in place, enter the context only after the backward passes of any
    graph built on these parameters.

    Args:
        params: the parameters to swap, e.g. ``fisher.params``.
        theta: their new values as one flat vector.

    Raises:
        ValueError: for an empty ``params`` or a ``theta`` of the wrong length.
    """
    params = list(params)
    if not params:
        raise ValueError("params must hold at least one tensor, got an empty sequence")
    check_vector("theta", theta, sum(p.numel() for p in params))
    saved = [p.detach().clone() for p in params]
    try:
        _assign(params, theta.split([p.numel() for p in params]))
        yield
    finally:
        _assign(params, saved)
