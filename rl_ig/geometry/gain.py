"""What the local model of a trust-region step predicts, and how the truth compares."""

from __future__ import annotations

import math

import torch

from rl_ig.geometry._checks import check_pair


def surrogate_gain(grad: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
    """The improvement the linear model predicts: ``gᵀΔ``.

    TRPO and NPG maximise the linearised surrogate ``L(θ_old + Δ) − L(θ_old) ≈ gᵀΔ`` subject to
    the quadratic KL model ``½ ΔᵀFΔ ≤ δ`` (Schulman et al. 2015, §6 and appendix C), whose
    maximiser is ``Δ = sqrt(2δ / gᵀF⁻¹g) · F⁻¹g``; the line search then compares the obtained
    improvement to this prediction.

    Args:
        grad: ``g = ∇_θ L`` at ``θ_old``, ``(n,)``, for the objective being *maximised* (pass
            ``−∇loss`` for a loss).
        step: ``Δ = θ_new − θ_old``, ``(n,)``.

    Returns:
        ``gᵀΔ`` as a 0-d tensor.
    """
    check_pair("grad", grad, "step", step)
    return torch.dot(grad, step)


def gain_ratio(predicted: float | torch.Tensor, obtained: float | torch.Tensor) -> float:
    """``obtained / predicted``: 1 where the linear model is exact, NaN where it predicts 0.

    Args:
        predicted: the model's gain, e.g. :func:`surrogate_gain`.
        obtained: the measured ``L(θ_new) − L(θ_old)``.
    """
    predicted, obtained = float(predicted), float(obtained)
    return math.nan if predicted == 0.0 else obtained / predicted
