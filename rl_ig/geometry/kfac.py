"""How good the Kronecker-factored Fisher of K-FAC is: factor conditioning, direction error.

K-FAC (Martens & Grosse 2015) replaces each layer's Fisher block by ``A ⊗ G``; the conditioning
of ``A`` and ``G`` says how much the damping ``λ`` shapes the step, and the distance of the
K-FAC direction to the conjugate-gradient natural gradient how much the factorisation costs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from rl_ig.geometry._checks import check_pair, check_vector
from rl_ig.optim import KFAC


def condition_number(matrix: torch.Tensor) -> float:
    """``λ_max / max(λ_min, n·eps·λ_max)`` of a symmetric positive semi-definite ``(n, n)``.

    Eigenvalues come from ``torch.linalg.eigvalsh`` (in float64). ``λ_min`` is clamped from
    below at ``n·eps·λ_max``, ``eps`` the machine epsilon of ``matrix.dtype`` (the rank
    tolerance of ``numpy.linalg.matrix_rank``): eigenvalues under it cannot be told from 0 in
    that precision, so a singular factor reads ``1/(n·eps)`` (about ``1.1e15/n`` in float64,
    ``8.4e6/n`` in float32) instead of inf or a negative number.

    Returns:
        The condition number ``>= 1``, or NaN when ``λ_max <= 0`` (a zero matrix).
    """
    if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"matrix must be square (n, n), got shape {tuple(matrix.shape)}")
    eigenvalues = torch.linalg.eigvalsh(matrix.double())
    largest = float(eigenvalues[-1])
    if not largest > 0.0:
        return math.nan
    floor = largest * matrix.shape[0] * torch.finfo(matrix.dtype).eps
    return largest / max(float(eigenvalues[0]), floor)


def factor_condition_numbers(optimizer: KFAC) -> dict[str, tuple[float, float]]:
    """``{layer name: (cond(A), cond(G))}`` of a K-FAC optimizer's running factors.

    See :func:`condition_number` for the clamp of ``λ_min``. Layers without factors yet (no
    ``step()`` taken) are absent.

    Raises:
        TypeError: for an optimizer other than :class:`rl_ig.optim.KFAC`.
    """
    if not isinstance(optimizer, KFAC):
        raise TypeError(f"optimizer must be an rl_ig.optim.KFAC, got {type(optimizer).__name__}")
    return {
        name: (condition_number(a), condition_number(g))
        for name, (a, g) in optimizer.factors().items()
    }


def kfac_relative_error(kfac_direction: torch.Tensor, cg_direction: torch.Tensor) -> float:
    """``‖Δ_kfac − Δ_cg‖ / ‖Δ_cg‖`` on flat vectors ``(n,)``.

    Returns:
        The relative error, or NaN when ``Δ_cg = 0`` (no reference length).
    """
    check_pair("kfac_direction", kfac_direction, "cg_direction", cg_direction)
    reference = torch.linalg.vector_norm(cg_direction)
    if not reference.item() > 0.0:
        return math.nan
    return float(torch.linalg.vector_norm(kfac_direction - cg_direction) / reference)


def flatten_directions(
    directions: Sequence[torch.Tensor | None], params: Sequence[torch.Tensor]
) -> torch.Tensor:
    """One flat vector ``(n,)`` of per-parameter tensors, ``None`` read as zeros.

    The layout is that of ``torch.nn.utils.parameters_to_vector(params)``.

    Raises:
        ValueError: for a count or a shape that does not match ``params``.
    """
    if len(directions) != len(params):
        raise ValueError(
            f"directions must hold one entry per parameter ({len(params)}), got {len(directions)}"
        )
    parts = []
    for i, (d, p) in enumerate(zip(directions, params)):
        if d is not None and d.shape != p.shape:
            raise ValueError(
                f"directions[{i}] must have shape {tuple(p.shape)}, got {tuple(d.shape)}"
            )
        parts.append((torch.zeros_like(p) if d is None else d).reshape(-1))
    return torch.cat(parts)


def _per_parameter(
    grads: torch.Tensor | Sequence[torch.Tensor | None], params: Sequence[torch.Tensor]
) -> list[torch.Tensor | None]:
    if isinstance(grads, torch.Tensor):
        check_vector("grads", grads, sum(p.numel() for p in params))
        return [c.view_as(p) for c, p in zip(grads.split([p.numel() for p in params]), params)]
    if len(grads) != len(params):
        raise ValueError(
            f"grads must hold one entry per parameter ({len(params)}), got {len(grads)}"
        )
    return list(grads)


def kfac_flat_direction(
    optimizer: KFAC,
    params: Sequence[torch.Tensor],
    grads: torch.Tensor | Sequence[torch.Tensor | None],
) -> torch.Tensor:
    """K-FAC's direction ``Δ = F̂⁻¹g`` (:meth:`KFAC.precondition`) as a flat vector over ``params``.

    ``params`` may be any subset of the optimizer's parameters in any order (for instance
    ``fisher.params``); the optimizer's other parameters get no gradient. Parameters whose
    direction is ``None`` contribute zeros.

    Args:
        optimizer: a K-FAC optimizer that has taken at least one ``step()``.
        params: the parameters, in the order of the flat layout.
        grads: ``g`` as one flat vector ``(n,)`` over ``params`` or one tensor (or None) each.

    Returns:
        ``(n,)`` in the ``parameters_to_vector(params)`` layout.

    Raises:
        TypeError: for an optimizer other than :class:`rl_ig.optim.KFAC`.
        ValueError: for a parameter the optimizer does not hold, or mismatched ``grads``.
    """
    if not isinstance(optimizer, KFAC):
        raise TypeError(f"optimizer must be an rl_ig.optim.KFAC, got {type(optimizer).__name__}")
    order = [p for group in optimizer.param_groups for p in group["params"]]
    held = {id(p) for p in order}
    for i, p in enumerate(params):
        if id(p) not in held:
            raise ValueError(f"params[{i}] is not a parameter of the KFAC optimizer")
    lookup = {id(p): g for p, g in zip(params, _per_parameter(grads, params))}
    directions = optimizer.precondition([lookup.get(id(p)) for p in order])
    found = {id(p): d for p, d in zip(order, directions)}
    return flatten_directions([found[id(p)] for p in params], params)
