"""Hand-derived forward and backward passes for Linear/Tanh/ReLU stacks.

Small RL networks are bound by per-operation overhead, not FLOPs. The critic's regression runs
hundreds of minibatch steps per update; computing its gradient with the chain rule written out
(one matmul per weight gradient, one per back-propagated error) skips the autograd engine's
graph building and bookkeeping. The result is the exact gradient of the same loss; the tests
compare it with autograd in float64.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class Layer:
    """One affine map ``z = h Wᵀ + b`` followed by an optional activation."""

    weight: torch.Tensor
    bias: torch.Tensor
    activation: str | None


_SUPPORTED = {nn.Tanh: "tanh", nn.ReLU: "relu"}


def as_layers(net: nn.Sequential) -> list[Layer] | None:
    """The net as ``Layer``s, or ``None`` if it holds anything but Linear, Tanh and ReLU."""
    layers: list[Layer] = []
    for module in net:
        if isinstance(module, nn.Linear) and module.bias is not None:
            layers.append(Layer(module.weight, module.bias, None))
        elif type(module) in _SUPPORTED and layers and layers[-1].activation is None:
            layers[-1] = Layer(layers[-1].weight, layers[-1].bias, _SUPPORTED[type(module)])
        else:
            return None
    return layers


def forward(layers: list[Layer], x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Output ``(B, out)`` and the input of every layer (for :func:`backward`)."""
    inputs = []
    h = x
    for layer in layers:
        inputs.append(h)
        if layer.activation == "tanh":
            h = _tanh_linear(h, layer)
        else:
            h = nn.functional.linear(h, layer.weight, layer.bias)
            if layer.activation == "relu":
                h = h.relu_()
    return h, inputs


def _tanh_linear(h: torch.Tensor, layer: Layer) -> torch.Tensor:
    # tanh(z) = 2σ(2z) − 1, with the 2 folded into the matmul. On AVX2 CPUs torch's sigmoid
    # kernel is about 4x faster than its tanh kernel (10.6 µs against 51.6 µs on 128×64), and
    # the two agree to float rounding (absolute error ≤ 2.4e-7 in float32).
    z2 = torch.addmm(layer.bias, h, layer.weight.t(), beta=2.0, alpha=2.0)
    return z2.sigmoid_().mul_(2.0).sub_(1.0)


def numpy_forward(layers: list[Layer]) -> Callable[[np.ndarray], np.ndarray]:
    """``x ↦ net(x)`` in NumPy float32 on a snapshot of the layers' current weights."""
    weights = [
        (
            layer.weight.detach().numpy().T.copy(),
            layer.bias.detach().numpy().copy(),
            layer.activation,
        )
        for layer in layers
    ]

    def run(x: np.ndarray) -> np.ndarray:
        h = x
        for w, b, activation in weights:
            h = h @ w
            h += b
            if activation == "tanh":
                np.tanh(h, out=h)
            elif activation == "relu":
                np.maximum(h, 0.0, out=h)
        return h

    return run


def backward(
    layers: list[Layer],
    inputs: list[torch.Tensor],
    delta: torch.Tensor,
    out: list[torch.Tensor] | None = None,
) -> list[torch.Tensor]:
    """Gradients ``[∂L/∂W₁, ∂L/∂b₁, …]`` given ``delta = ∂L/∂output``, ``(B, out)``.

    Args:
        out: tensors of those shapes to write the gradients into (reusing the same memory
            every step saves an allocation and a cold write per weight gradient), or None.
    """
    grads: list[torch.Tensor] = [torch.empty(0)] * (2 * len(layers))
    for i in range(len(layers) - 1, -1, -1):
        layer, h = layers[i], inputs[i]
        if out is None:
            grads[2 * i + 1] = delta.sum(dim=0)
            grads[2 * i] = delta.t().mm(h)
        else:
            grads[2 * i + 1] = torch.sum(delta, dim=0, out=out[2 * i + 1])
            grads[2 * i] = torch.mm(delta.t(), h, out=out[2 * i])
        if i == 0:
            break
        delta = delta.mm(layer.weight)
        # h is the previous layer's activation output: tanh' = 1 − h², relu' = [h > 0].
        if layers[i - 1].activation == "tanh":
            delta = delta.addcmul_(delta, h * h, value=-1.0)
        elif layers[i - 1].activation == "relu":
            # ReLU's own backward kernel: delta where h > 0, else 0, with no mask tensor.
            delta = torch.ops.aten.threshold_backward(delta, h, 0.0)
    return grads


def mse_step_grads(
    layers: list[Layer], x: torch.Tensor, target: torch.Tensor
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``mean((f(x) − target)²)`` for a scalar-output net, and its parameter gradients.

    Args:
        layers: the network, last layer of width 1.
        x: ``(B, in)`` inputs.
        target: ``(B,)`` regression targets.
    """
    with torch.no_grad():
        out, inputs = forward(layers, x)
        err = out.squeeze(-1) - target
        loss = err.square().mean()
        delta = (err * (2.0 / err.shape[0])).unsqueeze(-1)
        return loss, backward(layers, inputs, delta)
