"""Adam (Kingma & Ba 2015): the diagonal-Fisher member of the optimizer family.

``rl_ig.optim.Adam`` is ``torch.optim.Adam`` (same arguments, same state, same ``state_dict``)
whose fused step skips the per-call bookkeeping of the generic implementation: it keeps the
lists of tensors it hands to the fused kernel and only regroups them when the parameters
change. Small RL networks take hundreds of optimizer steps per update, each a few hundred
microseconds of Python before the kernel runs; the kernel and its results are the same.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch


def _fusable(params: list[torch.Tensor]) -> bool:
    return bool(params) and all(
        p.device.type in ("cpu", "cuda") and p.dtype in (torch.float32, torch.float64)
        for p in params
    )


class Adam(torch.optim.Adam):
    """``torch.optim.Adam``, fused by default, with a lean step.

    Update (per parameter, bias-corrected; Kingma & Ba 2015, Algorithm 1)::

        m ← β₁m + (1 − β₁)g,   v ← β₂v + (1 − β₂)g²
        θ ← θ − lr · (m / (1 − β₁ᵗ)) / (sqrt(v / (1 − β₂ᵗ)) + eps)

    Args:
        params: parameters or parameter groups, as for ``torch.optim.Adam``.
        fused: ``None`` (default) fuses when every parameter is a float tensor on the CPU or a
            GPU; other arguments are ``torch.optim.Adam``'s.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        fused: bool | None = None,
    ):
        params = list(params)
        flat = [
            p for item in params for p in (item["params"] if isinstance(item, dict) else [item])
        ]
        if fused is None:
            fused = _fusable(list(flat))
        super().__init__(
            params,
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            maximize=maximize,
            fused=fused,
        )

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One Adam step; the same update as ``torch.optim.Adam.step``."""
        if not self.defaults["fused"]:
            return super().step(closure)
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            self._fused_group_step(group)
        return loss

    def _fused_group_step(self, group: dict[str, Any]) -> None:
        params = [p for p in group["params"] if p.grad is not None]
        if not params:
            return
        for p in params:
            if not self.state[p]:
                self._init_state(p, group)
        states = [self.state[p] for p in params]
        steps = [s["step"] for s in states]
        torch._foreach_add_(steps, 1)
        beta1, beta2 = group["betas"]
        torch._fused_adam_(
            params,
            [p.grad for p in params],
            [s["exp_avg"] for s in states],
            [s["exp_avg_sq"] for s in states],
            [s["max_exp_avg_sq"] for s in states] if group["amsgrad"] else [],
            steps,
            amsgrad=group["amsgrad"],
            lr=group["lr"],
            beta1=beta1,
            beta2=beta2,
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            maximize=group["maximize"],
        )

    @staticmethod
    def _state_for(p: torch.Tensor, amsgrad: bool) -> dict[str, torch.Tensor]:
        state = {
            "step": torch.zeros((), dtype=torch.float32, device=p.device),
            "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
            "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format),
        }
        if amsgrad:
            state["max_exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state

    def _init_state(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        self.state[p].update(self._state_for(p, group["amsgrad"]))
