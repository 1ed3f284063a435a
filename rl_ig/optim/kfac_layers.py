"""Per-layer readers of the Kronecker factors ``A`` and ``G`` (one small class per layer type).

A layer ``y = W̄ ā`` with ``W̄ = [W, b]: (out, d+1)`` and ``ā = [a; 1]`` (no ``1`` without a
bias) has, per example, the gradient ``∇W̄ = g āᵀ`` with ``g = ∂ℓ/∂y``. K-FAC (Martens & Grosse
2015, §3) approximates its Fisher block ``E[vec(g āᵀ) vec(g āᵀ)ᵀ]`` by ``A ⊗ G`` with
``A = E[ā āᵀ]: (d+1, d+1)`` and ``G = E[g gᵀ]: (out, out)`` (column-major ``vec``).

The loss is taken to be a **mean** over the examples, ``L = (1/N) Σ_i ℓ_i``, so the backward
pass delivers ``∂L/∂y_i = g_i / N`` and ``G = N · Σ_i (∂L/∂y_i)(∂L/∂y_i)ᵀ = (1/N) Σ_i g_i g_iᵀ``.

* ``nn.Linear``: every row of the input ``(..., d)`` is one example (``N`` = number of rows),
  so a sequence model whose loss averages over tokens gets the per-token Fisher.
* ``nn.Conv2d`` (KFC, Grosse & Martens 2016, spatially uncorrelated derivatives): an example is
  one image of the batch ``B``; ``ā_{i,t}`` is the unfolded input patch at output position
  ``t`` (``C·kh·kw`` values in ``weight.reshape(out, -1)`` order, then the ``1``) and
  ``g_{i,t}`` the gradient of ``ℓ_i`` at that position. ``A`` is the mean of ``ā āᵀ`` over
  batch and positions, ``G = (1/B) Σ_i Σ_t g_{i,t} g_{i,t}ᵀ`` (a sum over positions), so a
  1×1 output reduces to the ``nn.Linear`` case exactly. Only ``groups == 1`` and zero padding
  are supported; other convolutions are left to the base rule with a warning.
"""

from __future__ import annotations

import math
import warnings
from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from torch import nn


class KFACLayer(ABC):
    """Reads ``A`` and ``G`` of one layer and maps its gradient to the matrix ``∇W̄``."""

    def __init__(self, name: str, module: nn.Linear | nn.Conv2d) -> None:
        self.name = name
        self.module = module

    @property
    def weight(self) -> torch.Tensor:
        return self.module.weight

    @property
    def bias(self) -> torch.Tensor | None:
        """The bias if it is trained; a frozen bias is a constant and gets no ``1`` column."""
        bias = self.module.bias
        return bias if bias is not None and bias.requires_grad else None

    @property
    def factor_dims(self) -> tuple[int, int]:
        """``(d+1, out)`` (``(d, out)`` without a trained bias): the sizes of ``A`` and ``G``."""
        shape = self.weight.shape
        return math.prod(shape[1:]) + (self.bias is not None), shape[0]

    @property
    def factor_dtype(self) -> torch.dtype:
        """float64 for a float64 layer, float32 otherwise (also under ``torch.autocast``)."""
        return torch.promote_types(self.weight.dtype, torch.float32)

    @abstractmethod
    def input_rows(self, x: torch.Tensor) -> torch.Tensor:
        """The rows ``a: (M, d)`` whose outer products average to ``A`` (bias column excluded)."""

    @abstractmethod
    def output_rows(self, grad_out: torch.Tensor) -> tuple[torch.Tensor, int]:
        """The rows ``∂L/∂y: (M, out)`` and the number of examples ``N`` the loss averages."""

    def a_factor(self, x: torch.Tensor) -> torch.Tensor:
        """``A = mean over rows of ā āᵀ``: ``(d+1, d+1)`` (``(d, d)`` without bias)."""
        # Hooks run inside the user's autocast region, which would redo the matmul in bf16.
        with torch.autocast(device_type=x.device.type, enabled=False):
            a = self.input_rows(x.detach()).to(self.factor_dtype)
            if self.bias is not None:
                a = torch.cat([a, a.new_ones(a.shape[0], 1)], dim=1)
            return (a.T @ a).div_(a.shape[0])

    def g_factor(self, grad_out: torch.Tensor) -> torch.Tensor:
        """``G = N · Σ_rows (∂L/∂y)(∂L/∂y)ᵀ = (1/N) Σ_i g_i g_iᵀ``: ``(out, out)``."""
        with torch.autocast(device_type=grad_out.device.type, enabled=False):
            rows, n = self.output_rows(grad_out.detach())
            rows = rows.to(self.factor_dtype)
            return (rows.T @ rows).mul_(n)

    def as_matrix(self, weight_like: torch.Tensor, bias_like: torch.Tensor | None) -> torch.Tensor:
        """``[W, b]: (out, d+1)`` from tensors shaped like the weight and the bias."""
        mat = weight_like.reshape(weight_like.shape[0], -1)
        if self.bias is None:
            return mat
        if bias_like is None:
            bias_like = mat.new_zeros(mat.shape[0])
        return torch.cat([mat, bias_like.reshape(-1, 1).to(mat.dtype)], dim=1)

    def split(self, mat: torch.Tensor) -> list[torch.Tensor]:
        """Inverse of :meth:`as_matrix`: ``[weight-shaped]`` or ``[weight-, bias-shaped]``."""
        weight = self.weight
        if self.bias is None:
            return [mat.reshape(weight.shape)]
        return [mat[:, :-1].reshape(weight.shape), mat[:, -1].clone()]


class LinearLayer(KFACLayer):
    """``nn.Linear``: input ``(..., d)``, output ``(..., out)``; one example per row."""

    def input_rows(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(-1, x.shape[-1])

    def output_rows(self, grad_out: torch.Tensor) -> tuple[torch.Tensor, int]:
        rows = grad_out.reshape(-1, grad_out.shape[-1])
        return rows, rows.shape[0]


class Conv2dLayer(KFACLayer):
    """``nn.Conv2d``: input ``(B, C, H, W)`` unfolded to patches, output ``(B, out, H', W')``."""

    module: nn.Conv2d

    def _pad(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        padding = self.module.padding
        if not isinstance(padding, str):
            return x, (int(padding[0]), int(padding[1]))
        if padding == "valid":
            return x, (0, 0)
        # "same": the total padding dilation·(k−1) per side, the odd one extra on the right.
        pads: list[int] = []
        for k, d in zip(reversed(self.module.kernel_size), reversed(self.module.dilation)):
            total = d * (k - 1)
            pads += [total // 2, total - total // 2]
        return F.pad(x, pads), (0, 0)

    def input_rows(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:
            x = x.unsqueeze(0)
        x, padding = self._pad(x)
        m = self.module
        patches = F.unfold(x, m.kernel_size, dilation=m.dilation, padding=padding, stride=m.stride)
        return patches.transpose(1, 2).reshape(-1, patches.shape[1])

    def output_rows(self, grad_out: torch.Tensor) -> tuple[torch.Tensor, int]:
        if grad_out.dim() == 3:
            grad_out = grad_out.unsqueeze(0)
        batch, channels = grad_out.shape[:2]
        return grad_out.permute(0, 2, 3, 1).reshape(-1, channels), batch


def make_layer(name: str, module: nn.Module) -> KFACLayer | None:
    """The reader for ``module``, or None if K-FAC does not precondition it.

    Layers whose weight is frozen are skipped; a grouped or non-zero-padded ``nn.Conv2d`` is
    skipped with a warning (its parameters then get the base rule of the "other" group).
    """
    if not isinstance(module, (nn.Linear, nn.Conv2d)) or not module.weight.requires_grad:
        return None
    if isinstance(module, nn.Linear):
        return LinearLayer(name, module)
    if module.groups != 1 or module.padding_mode != "zeros":
        warnings.warn(
            f"KFAC: Conv2d {name!r} has groups={module.groups}, "
            f"padding_mode={module.padding_mode!r}; only groups=1 with zero padding is "
            "preconditioned, so its parameters get the base (SGD) rule",
            stacklevel=4,
        )
        return None
    return Conv2dLayer(name, module)


def find_layers(model: nn.Module) -> list[KFACLayer]:
    """Readers for the model's preconditioned layers, in ``named_modules`` order.

    Raises:
        ValueError: if there is none.
    """
    layers = [make_layer(name or "model", m) for name, m in model.named_modules()]
    found = [layer for layer in layers if layer is not None]
    if not found:
        raise ValueError(
            "KFAC: model has no nn.Linear or nn.Conv2d layer to precondition; use another "
            "optimizer (e.g. rl_ig.optim.Adam or torch.optim.SGD)"
        )
    return found
