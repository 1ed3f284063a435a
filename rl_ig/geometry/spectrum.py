"""The top of the policy Fisher's spectrum, by Lanczos on Fisher-vector products.

The largest eigenvalues of ``F`` say how sharply the action distributions react to the stiffest
parameter directions: a step of Euclidean length ``ε`` along the top eigenvector costs a KL of
``½ λ_max ε²``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from rl_ig.fisher import PolicyFisher
from rl_ig.geometry._checks import check_int, check_obs


def _orthogonalise(w: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    # Classical Gram-Schmidt twice ("twice is enough", Giraud et al. 2005): full
    # reorthogonalisation, so that no copies of converged Ritz values appear.
    for _ in range(2):
        w = w - basis.T @ (basis @ w)
    return w


def _tridiagonal(alphas: list[torch.Tensor], betas: list[torch.Tensor]) -> torch.Tensor:
    t = torch.diag(torch.stack(alphas))
    if betas:
        off = torch.stack(betas)
        t = t + torch.diag(off, 1) + torch.diag(off, -1)
    return t


def lanczos(
    matvec: Callable[[torch.Tensor], torch.Tensor],
    dim: int,
    iters: int,
    generator: torch.Generator,
    dtype: torch.dtype,
    device: torch.device | str,
) -> torch.Tensor:
    """Ritz values of a symmetric operator: the eigenvalues of its Lanczos tridiagonal.

    Lanczos (1950) with full reorthogonalisation: from a random unit ``q₁``, ``m`` steps build an
    orthonormal basis ``Q = [q₁ … q_m]`` of the Krylov space ``span{q₁, Aq₁, …, A^{m−1}q₁}`` and
    the tridiagonal ``T = QᵀAQ`` (diagonal ``α_j = q_jᵀAq_j``, off-diagonal ``β_j``). The extreme
    eigenvalues of ``T`` converge first to those of ``A``; with ``m = dim`` they are all of them.

    The iteration stops early at an invariant subspace, when ``β_j <= sqrt(eps)·s`` with ``s``
    the largest ``|α_i| + β_i`` so far: the Krylov space is exhausted (for instance ``A`` has
    fewer distinct eigenvalues than ``m``) and ``T`` is then fewer than ``m`` rows, each of its
    eigenvalues exact. A repeated eigenvalue of ``A`` is found once in exact arithmetic (the
    start vector has one component in its eigenspace); round-off may add further copies.

    Args:
        matvec: ``v ↦ A v`` for ``v: (dim,)``, ``A`` symmetric.
        dim: the size ``n`` of ``A``, ``>= 1``.
        iters: Lanczos steps ``m >= 1`` (one ``matvec`` each), capped at ``dim``.
        generator: the source of the start vector (drawn on the generator's device).
        dtype: a floating-point dtype for the basis.
        device: where the basis lives (that of ``matvec``'s vectors).

    Returns:
        The eigenvalues of ``T``, ``(m',)`` with ``m' <= min(iters, dim)``, descending.

    Raises:
        ValueError: for ``dim < 1`` or ``iters < 1``.
        TypeError: for a ``generator`` that is not a ``torch.Generator`` or a non-float dtype.
    """
    check_int("dim", dim, 1)
    check_int("iters", iters, 1)
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    if not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point dtype, got {dtype}")
    steps = min(iters, dim)
    q = torch.randn(dim, generator=generator, dtype=dtype, device=generator.device).to(device)
    q = q / torch.linalg.vector_norm(q)
    basis = torch.zeros(steps, dim, dtype=dtype, device=device)
    alphas: list[torch.Tensor] = []
    betas: list[torch.Tensor] = []
    threshold, scale = torch.finfo(dtype).eps ** 0.5, 0.0
    for j in range(steps):
        basis[j] = q
        w = matvec(q)
        alphas.append(torch.dot(q, w))
        w = _orthogonalise(w, basis[: j + 1])
        beta = torch.linalg.vector_norm(w)
        scale = max(scale, abs(alphas[-1].item()) + beta.item())
        if j + 1 == steps or beta.item() <= threshold * scale:
            break
        betas.append(beta)
        q = w / beta
    return torch.linalg.eigvalsh(_tridiagonal(alphas, betas)).flip(0)


def top_eigenvalues(
    fisher: PolicyFisher, obs: torch.Tensor, k: int = 5, iters: int = 30, seed: int = 0
) -> torch.Tensor:
    """The ``k`` largest eigenvalues of the policy Fisher ``F``, by :func:`lanczos`.

    ``F`` is taken at the policy's current parameters and applied through exact, undamped
    Fisher-vector products, one per Lanczos step. The start vector comes from a private
    ``torch.Generator`` seeded with ``seed``: the global random state is left alone.

    Args:
        fisher: the policy's Fisher.
        obs: the states ``(B, obs_dim)``.
        k: how many eigenvalues, ``1 <= k <= min(iters, fisher.dim)``.
        iters: Lanczos steps, ``>= 1``, capped at ``fisher.dim``.
        seed: seed of the start vector.

    Returns:
        ``(k',)`` descending; ``k' < k`` only when Lanczos met an invariant subspace first
        (``F`` has fewer than ``k`` distinct eigenvalues seen from the start vector). A
        repeated eigenvalue may be listed fewer times than its multiplicity (see
        :func:`lanczos`): the log-std block of a Gaussian policy with a state-independent
        ``σ`` is exactly ``2·I``, for instance.

    Raises:
        ValueError: for ``k`` or ``iters`` out of range.
    """
    check_obs(obs)
    check_int("iters", iters, 1)
    check_int("seed", seed, 0)
    most = min(iters, fisher.dim)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= most:
        raise ValueError(f"k must be an int in [1, min(iters, dim)] = [1, {most}], got {k!r}")
    like = fisher.params[0]
    generator = torch.Generator().manual_seed(seed)
    values = lanczos(
        lambda v: fisher.fvp(obs, v), fisher.dim, iters, generator, like.dtype, like.device
    )
    return values[:k]
