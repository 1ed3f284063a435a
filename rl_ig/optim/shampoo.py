"""Shampoo (Gupta, Koren & Singer 2018), with the blocking, grafting and amortised roots of
Distributed Shampoo (Shi et al. 2023, "A Distributed Data-Parallel PyTorch Implementation of
the Distributed Shampoo Optimizer", §2–3).

Per parameter ``W`` with gradient ``G`` at its step ``t`` (1, 2, … counting the steps in which it
had a finite gradient)::

    M ← β₁M + (1 − β₁)G,      M̂ = M / (1 − β₁ᵗ)                (M̂ = G for β₁ = 0)
    L ← β₂L + (1 − β₂)GGᵀ,    R ← β₂R + (1 − β₂)GᵀG             (plain sums for β₂ = 1)
    D = (L̂ + εI)^(-1/4) M̂ (R̂ + εI)^(-1/4),    L̂ = L / (1 − β₂ᵗ)  (L̂ = L for β₂ = 1)
    D ← (‖A‖ / ‖D‖) · D                                         (grafting onto A)
    W ← W − lr·wd·W − lr·D

``L``, ``R``, the roots and the grafting norms are per block (:mod:`rl_ig.optim.shampoo_blocks`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, overload

import torch
from torch import nn
from torch.optim import Optimizer

from rl_ig.distributed import check_backend, world
from rl_ig.optim.shampoo_batches import BlockBatch, make_batches
from rl_ig.optim.shampoo_blocks import (
    ShampooBlock,
    even_split,
    init_block_state,
    make_blocks,
    matrix_shape,
)
from rl_ig.optim.shampoo_config import ShampooConfig
from rl_ig.optim.shampoo_distributed import (
    ROOT_KEYS,
    BlockOwners,
    BlockState,
    SharedDirection,
    exchange_directions,
    gather_block_states,
    plan_blocks,
    plan_key,
    release_foreign_blocks,
)

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup

_DIM = "max_preconditioner_dim"
_INFO_KEYS = (
    "eigh_retries",
    "eigh_fallbacks",
    "root_updates",
    "preconditioned_params",
    "skipped_params",
)


class Shampoo(Optimizer):
    r"""Shampoo with grafting, for any parameters (``torch.optim`` style).

    With ``grafting="none"``, ``betas=(0, 1)`` and ``start_preconditioning_step=1``, one step on
    a matrix parameter is ``W ← W − lr·(L + εI)^(-1/4) G (R + εI)^(-1/4)``, ``L = ΣGGᵀ``,
    ``R = ΣGᵀG`` (sums over the steps so far). In general, see the module docstring, and:

    * Momentum: ``β₁`` filters the gradient (bias-corrected EMA ``M̂``); both Shampoo and the
      grafting method precondition ``M̂``, while the factors and grafting statistics see ``G``.
    * Grafting (per block of the preconditioner): the Shampoo direction of each block is
      rescaled to the Frobenius norm of the grafting direction ``A`` on that block. ``A`` is
      elementwise: ``"adam"``: ``V ← β₂ᵍV + (1 − β₂ᵍ)G²``, ``A = M̂ / (sqrt(V / (1 − β₂ᵍᵗ)) + εᵍ)``;
      ``"adagrad"``: ``V ← V + G²``, ``A = M̂ / (sqrt(V) + εᵍ)``; ``"sgd"``: ``A = M̂``;
      ``"none"``: no rescaling.
    * Before ``start_preconditioning_step`` (steps ``t < start``) the step is ``D = A`` (the
      grafting method alone; the factors still accumulate). Parameters with ``ndim < 2``
      (biases, norms) always take ``D = A``, and ``D = M̂`` (SGD) with ``grafting="none"``.
    * Parameters with ``ndim > 2`` are preconditioned as the matrix ``(shape[0], rest)``.
    * Roots are recomputed at the steps ``t >= start`` with ``t % precondition_frequency == 0``,
      and at a block's first preconditioned step; in between they are reused. They are taken by
      ``eigh`` in the factors' dtype (float32, or float64 for float64 parameters), retried in
      float64 with ``10·ε`` more, else the previous root (or the identity) is kept.
    * A parameter whose gradient or direction is not finite is not updated (its state neither).

    Data-parallel training (``torchrun``, the model wrapped in DDP): with more than one rank in
    ``process_group``, the preconditioner blocks of all matrix parameters are assigned to ranks
    by cost (``r³ + c³``, greedy, the same on every rank; ZeRO-1 of Distributed Shampoo). A rank
    keeps factors and roots for its own blocks only, updates them from the DDP-averaged gradient
    and computes their grafted directions; the directions are all-gathered (one flat buffer per
    dtype per step) and every rank applies all of them, so parameters stay the same on every
    rank. Momentum, grafting statistics and 1-D parameters are computed by every rank; so are
    the non-finite checks, on the gathered directions, so a skip is the same everywhere.
    ``step()`` and ``state_dict()`` are then collectives (every rank must call them):
    ``state_dict()`` gathers every block from its owner and returns, on every rank, the complete
    state in the single-process format, which ``load_state_dict`` takes at any world size
    (each rank keeping its own blocks). ``last_step_info`` counts the whole group's roots.

    Hyperparameters are ``param_groups`` keys; the blocking of a parameter is fixed by its
    group's ``max_preconditioner_dim`` when its state is created. After each step,
    ``last_step_info`` holds floats ``eigh_retries``, ``eigh_fallbacks`` (factors whose root
    could not be computed), ``root_updates`` (blocks whose roots were recomputed),
    ``preconditioned_params`` and ``skipped_params`` (non-finite gradient or direction).

    Args:
        params: parameters or parameter groups (e.g. ``model.parameters()``).
        lr: learning rate >= 0; with grafting it is the grafting method's step size, hence
            Adam's default.
        betas: ``(β₁, β₂)``: gradient EMA in [0, 1) and factor EMA in (0, 1], ``β₂ = 1`` summing
            the factors (Distributed Shampoo's default ``(0.9, 1.0)``).
        epsilon: ε > 0 added to each factor before its root (Distributed Shampoo: 1e-12).
        weight_decay: decoupled (AdamW-style) coefficient >= 0.
        precondition_frequency: steps between root computations, >= 1 (amortises the
            ``O(d³)`` eigendecompositions).
        start_preconditioning_step: first preconditioned step, >= 1 (default: the first step at
            which roots are due, Distributed Shampoo's choice).
        max_preconditioner_dim: largest factor size >= 1; longer dimensions are split into
            blocks (Distributed Shampoo: 1024).
        grafting: ``"adam"`` (the recommended setting of Shi et al. 2023), ``"adagrad"``,
            ``"sgd"`` or ``"none"``.
        grafting_beta2: Adam grafting's second-moment decay in [0, 1) (Adam's 0.999).
        grafting_epsilon: Adam/AdaGrad grafting's ε > 0 (Adam's 1e-8).
        process_group: the ranks that share the blocks; None: the default group when
            ``torch.distributed`` is initialised, else a single process. Its backend must serve
            the parameters' device (gloo: CPU, NCCL: CUDA).

    Raises:
        TypeError: for a module passed as ``params``.
        ValueError: naming the argument and its allowed range, for any value outside it, or a
            process group that cannot serve the parameters' device.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 1.0),
        epsilon: float = 1e-12,
        weight_decay: float = 0.0,
        precondition_frequency: int = 10,
        start_preconditioning_step: int = 10,
        max_preconditioner_dim: int = 1024,
        grafting: str = "adam",
        grafting_beta2: float = 0.999,
        grafting_epsilon: float = 1e-8,
        *,
        process_group: ProcessGroup | None = None,
    ) -> None:
        if isinstance(params, nn.Module):
            raise TypeError(
                "Shampoo: params must be parameters or parameter groups (model.parameters()), "
                f"got a {type(params).__name__} module"
            )
        config = ShampooConfig(
            lr=lr,
            betas=betas,
            epsilon=epsilon,
            weight_decay=weight_decay,
            precondition_frequency=precondition_frequency,
            start_preconditioning_step=start_preconditioning_step,
            max_preconditioner_dim=max_preconditioner_dim,
            grafting=grafting,
            grafting_beta2=grafting_beta2,
            grafting_epsilon=grafting_epsilon,
        )
        self._blocks: dict[torch.Tensor, list[ShampooBlock]] = {}
        self._batches: dict[torch.Tensor, tuple[tuple[bool, ...], list[BlockBatch]]] = {}
        self._process_group = process_group
        self._owners: BlockOwners | None = None
        super().__init__(params, config.group_defaults())
        self.last_step_info: dict[str, float] = {}
        check_backend(self.param_groups[0]["params"][0].device, process_group)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """``torch.optim`` grouping, then validation of the group's hyperparameters."""
        super().add_param_group(param_group)
        ShampooConfig.from_group(self.param_groups[-1])
        self._owners = None

    @overload
    def step(self, closure: None = None) -> None: ...

    @overload
    def step(self, closure: Callable[[], float]) -> float: ...

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """One Shampoo step; returns ``closure()`` (evaluated with gradients enabled), if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        info = dict.fromkeys(_INFO_KEYS, 0.0)
        pending = [
            (p, group) for group in self.param_groups for p in group["params"] if p.grad is not None
        ]
        finite = _all_finite([p.grad for p, _ in pending if p.grad is not None])
        plan = self._block_owners()
        shared: list[SharedDirection] = []
        updates = []
        for (p, group), ok in zip(pending, finite):
            if ok:
                updates.append((p, group, self._direction(p, group, info, plan, shared)))
            else:
                info["skipped_params"] += 1
        if plan is not None and shared:
            counts = [info[key] for key in ROOT_KEYS]
            totals = exchange_directions(shared, counts, plan.rank, plan.size, self._process_group)
            info.update(zip(ROOT_KEYS, totals))
        self._apply(updates, info)
        self.last_step_info = info
        return loss

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """``torch.optim`` loading, keeping every tensor in its saved dtype (factors are float32
        even for low-precision parameters) and copying it (no aliasing of ``state_dict``)."""
        super().load_state_dict(state_dict)
        params = [p for group in self.param_groups for p in group["params"]]
        for index, saved in state_dict["state"].items():
            p = params[index]
            self.state[p].update({k: _restore(v, p.device) for k, v in saved.items()})
        self._owners = None
        plan = self._block_owners()
        if plan is None:
            return
        for p in params:
            if "L" in self.state.get(p, {}):
                self._keep_own_blocks(p, plan)

    def state_dict(self) -> dict[str, Any]:
        """``torch.optim``'s state dict, complete at any world size.

        With more than one rank this is a collective (every rank must call it): every block's
        factors and roots are broadcast from its owner, and every rank returns the state of a
        single-process run, in its format.
        """
        saved = super().state_dict()
        plan = self._block_owners()
        if plan is None:
            return saved
        params = [p for group in self.param_groups for p in group["params"]]
        indexed = [(i, p) for i, p in enumerate(params) if "L" in self.state.get(p, {})]
        items = [
            BlockState(self.state[p], self._blocks_of(p), plan.of(p), _factor_dtype(p), p.device)
            for _, p in indexed
        ]
        full = gather_block_states(items, plan.rank, self._process_group)
        state = dict(saved["state"])
        for (i, _), lists in zip(indexed, full):
            state[i] = {**state[i], **lists}
        return {**saved, "state": state}

    # ----------------------------------------------------------------- step parts

    def _block_owners(self) -> BlockOwners | None:
        """Who owns which block, for more than one rank (cached while the blocking holds)."""
        rank, size = world(self._process_group)
        if size == 1:
            return None
        entries = [
            (p, matrix_shape(p.shape), *_blocking(self.state.get(p, {}), group))
            for group in self.param_groups
            for p in group["params"]
            if _is_matrix(p)
        ]
        if self._owners is None or self._owners.key != plan_key(entries, rank, size):
            self._owners = plan_blocks(entries, rank, size)
        return self._owners

    def _keep_own_blocks(self, p: torch.Tensor, plan: BlockOwners) -> None:
        """After loading a complete state: this rank's blocks in the factor dtype, no others."""
        state, dtype = self.state[p], _factor_dtype(p)
        for key in ("L", "R", "L_root", "R_root"):
            state[key] = [v if v is None else v.to(dtype) for v in state[key]]
        release_foreign_blocks(state, plan.mine(p))

    def _direction(
        self,
        p: torch.Tensor,
        group: dict[str, Any],
        info: dict[str, float],
        plan: BlockOwners | None = None,
        shared: list[SharedDirection] | None = None,
    ) -> torch.Tensor:
        """The direction ``D`` of one parameter (before lr and weight decay); updates its state.

        With ``plan``, only this rank's blocks are computed; the parameter's direction, with
        the other blocks still to be received, is appended to ``shared``.
        """
        assert p.grad is not None
        state = self._state(p, group, plan)
        state["step"] += 1
        t, grad = state["step"], p.grad
        beta1, beta2 = group["betas"]
        search = filtered_gradient(state, grad, beta1, t)
        graft = graft_direction(state, grad, search, group, t)
        if not _is_matrix(p):
            return search if graft is None else graft
        blocks = self._blocks_of(p)
        owned = [True] * len(blocks) if plan is None else plan.mine(p)
        batches = self._batches_of(p, blocks, owned)
        shape = matrix_shape(p.shape)
        stack = batches[0].stacks["L"] if batches else None
        dtype = stack.dtype if stack is not None else _factor_dtype(p)
        grad_2d = grad.reshape(shape).to(dtype)
        for batch in batches:
            batch.update_factors(batch.gather(grad_2d), beta2)
        if t < group["start_preconditioning_step"]:
            return search if graft is None else graft
        due = t % group["precondition_frequency"] == 0
        correction = 1.0 - beta2**t if beta2 < 1.0 else 1.0
        for batch in batches:
            if due or not batch.has_roots:
                batch.refresh_roots(group["epsilon"], correction, info)
        info["preconditioned_params"] += 1
        graft_2d = None if graft is None else graft.reshape(shape).to(dtype)
        search_2d = search.reshape(shape).to(dtype)
        matrix = _directions(batches, search_2d, graft_2d, whole=plan is None)
        if plan is not None and shared is not None:
            shared.append(SharedDirection(matrix, blocks, plan.of(p)))
        return matrix.view(p.shape)

    def _state(
        self, p: torch.Tensor, group: dict[str, Any], plan: BlockOwners | None = None
    ) -> dict[str, Any]:
        """The parameter's state, created on its first step (own blocks only, with ``plan``)."""
        state = self.state[p]
        if not state:
            state["step"] = 0
            if _is_matrix(p):
                shape, max_dim = matrix_shape(p.shape), group[_DIM]
                mine = None if plan is None else plan.mine(p)
                init_block_state(state, shape, max_dim, _factor_dtype(p), p.device, mine)
        if group["betas"][0] > 0 and "exp_avg" not in state:
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        if group["grafting"] in ("adam", "adagrad") and "graft_sq" not in state:
            state["graft_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state

    def _batches_of(
        self, p: torch.Tensor, blocks: list[ShampooBlock], owned: list[bool]
    ) -> list[BlockBatch]:
        """This rank's blocks of ``p`` in same-shape batches, rebuilt when the state's block
        lists were replaced (loading) or the ownership changed."""
        key = tuple(owned)
        cached = self._batches.get(p)
        if cached is not None and cached[0] == key and all(b.is_current() for b in cached[1]):
            return cached[1]
        mine = [b for b, own in zip(blocks, owned) if own]
        batches = make_batches(self.state[p], mine, matrix_shape(p.shape))
        self._batches[p] = (key, batches)
        return batches

    def _blocks_of(self, p: torch.Tensor) -> list[ShampooBlock]:
        """The parameter's blocks, rebuilt when its state was replaced (``load_state_dict``)."""
        blocks = self._blocks.get(p)
        if blocks is None or blocks[0].state is not self.state[p]:
            blocks = self._blocks[p] = make_blocks(self.state[p], matrix_shape(p.shape))
        return blocks

    @staticmethod
    def _apply(
        updates: list[tuple[torch.Tensor, dict[str, Any], torch.Tensor]], info: dict[str, float]
    ) -> None:
        """``W ← W − lr·wd·W − lr·D`` for every parameter whose ``D`` is finite."""
        finite = _all_finite([d for _, _, d in updates])
        for (p, group, direction), ok in zip(updates, finite):
            if not ok:
                info["skipped_params"] += 1
                continue
            lr, wd = group["lr"], group["weight_decay"]
            if wd:
                p.mul_(1.0 - lr * wd)
            p.add_(direction.to(p.dtype), alpha=-lr)


def _directions(
    batches: list[BlockBatch],
    search: torch.Tensor,
    graft: torch.Tensor | None,
    whole: bool,
) -> torch.Tensor:
    """The preconditioned direction ``(m, n)``: every batch's blocks filled in, the rest zero
    (``whole``: the batches cover every block)."""
    stacks = [
        batch.directions(batch.gather(search), None if graft is None else batch.gather(graft))
        for batch in batches
    ]
    if whole and len(stacks) == 1 and stacks[0].shape[0] == 1:
        return stacks[0][0]  # one block: the direction itself
    out = torch.empty_like(search) if whole else torch.zeros_like(search)
    for batch, stack in zip(batches, stacks):
        batch.scatter(stack, out)
    return out


def filtered_gradient(
    state: dict[str, Any], grad: torch.Tensor, beta1: float, step: int
) -> torch.Tensor:
    """``M̂ = M / (1 − β₁ᵗ)`` after ``M ← β₁M + (1 − β₁)G``; ``G`` itself when ``β₁ = 0``."""
    if beta1 == 0:
        return grad
    exp_avg = state["exp_avg"]
    exp_avg.lerp_(grad, 1.0 - beta1)
    return exp_avg / (1.0 - beta1**step)


def graft_direction(
    state: dict[str, Any],
    grad: torch.Tensor,
    search: torch.Tensor,
    group: dict[str, Any],
    step: int,
) -> torch.Tensor | None:
    """The grafting method's direction ``A`` (see :class:`Shampoo`); None for ``"none"``."""
    grafting = group["grafting"]
    if grafting == "none":
        return None
    if grafting == "sgd":
        return search
    sq = state["graft_sq"]
    if grafting == "adam":
        beta2 = group["grafting_beta2"]
        sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
        denom = sq.sqrt().div_(math.sqrt(1.0 - beta2**step)).add_(group["grafting_epsilon"])
    else:
        sq.addcmul_(grad, grad)
        denom = sq.sqrt().add_(group["grafting_epsilon"])
    return torch.div(search, denom, out=denom)


def _blocking(state: dict[str, Any], group: dict[str, Any]) -> tuple[int, bool]:
    """``(block dim, even split)`` of a parameter: its state's, else its group's (a new state)."""
    if "block_dim" not in state:
        return group[_DIM], True
    return state["block_dim"], even_split(state)


def _factor_dtype(p: torch.Tensor) -> torch.dtype:
    """float32 factors, float64 for a float64 parameter."""
    return torch.promote_types(p.dtype, torch.float32)


def _is_matrix(p: torch.Tensor) -> bool:
    """Whether Shampoo preconditions ``p`` (``ndim >= 2`` and not empty)."""
    return p.ndim >= 2 and p.numel() > 0


def _all_finite(tensors: list[torch.Tensor]) -> list[bool]:
    """Per tensor, whether all its entries are finite (one device synchronisation in all).

    Read from the L1 norms (one pass per tensor, where ``isfinite(t).all()`` takes four): a
    norm is NaN or infinite exactly when an entry is, or when the entries' absolute sum exceeds
    the dtype's range (about 3e38 in float32), which counts as non-finite too.
    """
    if not tensors:
        return []
    device = tensors[0].device
    norms = torch._foreach_norm(tensors, 1)
    flags = torch.isfinite(torch.stack([n.to(device, torch.float64) for n in norms]))
    return [bool(ok) for ok in flags.tolist()]


def _restore(value: Any, device: torch.device) -> Any:
    """A saved state value on ``device``: tensors copied in their own dtype, lists element-wise."""
    if isinstance(value, torch.Tensor):
        return value.to(device=device, copy=True)
    if isinstance(value, list):
        return [_restore(v, device) for v in value]
    return value
