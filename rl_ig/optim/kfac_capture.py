"""Hooks that read one batch's ``(A, G)`` statistics from the K-FAC layers.

A forward hook computes ``A`` from the layer's input and registers a hook on the layer's
output tensor; when a backward pass reaches that output, the hook computes ``G`` from the
output gradient and *commits* the pair. ``A`` and ``G`` of a committed pair therefore always
come from the same forward pass, and the last committed pair before ``step()`` wins.

Nothing is recorded unless the layer is in training mode, gradients are enabled and factors
are due at the coming step; with ``explicit=True``, also only for forwards run inside
:meth:`FactorCapture.block` and backwards run inside it.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any

import torch
from torch import nn

from rl_ig.optim.kfac_layers import KFACLayer


class _ForwardHook:
    """Forward hook holding only a weak reference, so a deep copy of the model (an "old
    policy") neither keeps the optimizer alive nor records into it."""

    def __init__(self, capture: FactorCapture, index: int) -> None:
        self._capture = weakref.ref(capture)
        self._index = index

    def __call__(self, module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        capture = self._capture()
        if capture is not None:
            capture.on_forward(self._index, module, inputs, output)


class FactorCapture:
    """Batch statistics of the K-FAC layers, as ``{layer index: (A_batch, G_batch)}``."""

    def __init__(self, layers: Sequence[KFACLayer], explicit: bool) -> None:
        self.layers = list(layers)
        self.explicit = explicit
        self.due = True
        self._inside = False
        self._pending: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._outputs: list[torch.Tensor] = []
        self._handles = [
            layer.module.register_forward_hook(_ForwardHook(self, i))
            for i, layer in enumerate(self.layers)
        ]

    def _recording(self) -> bool:
        return self.due and (self._inside or not self.explicit)

    def on_forward(self, index: int, module: nn.Module, inputs: tuple[Any, ...], out: Any) -> None:
        layer = self.layers[index]
        if module is not layer.module or not module.training or not torch.is_grad_enabled():
            return
        if not self._recording() or not isinstance(out, torch.Tensor) or not out.requires_grad:
            return
        a = layer.a_factor(inputs[0])
        out.register_hook(partial(self._on_grad_output, index, a))
        if self._inside:
            self._outputs.append(out)

    def _on_grad_output(self, index: int, a: torch.Tensor, grad: torch.Tensor) -> None:
        if self.explicit and not self._inside:
            return
        self._pending[index] = (a, self.layers[index].g_factor(grad))

    @contextmanager
    def block(self) -> Iterator[None]:
        """Record the forwards and backwards run inside the ``with`` block (explicit mode)."""
        if self._inside:
            raise RuntimeError("KFAC: capture_factors() blocks cannot be nested")
        self._inside = True
        try:
            yield
        finally:
            self._inside = False
            self._outputs = []

    def outputs(self) -> list[torch.Tensor]:
        """The recording layers' outputs from the forwards run so far in the current block."""
        return list(self._outputs)

    def take(self) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        """The committed pairs since the last call, which are then forgotten."""
        pending, self._pending = self._pending, {}
        return pending

    def remove_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
