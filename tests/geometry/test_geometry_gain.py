"""surrogate_gain and gain_ratio by hand."""

from __future__ import annotations

import math

import torch

from rl_ig.geometry import gain_ratio, surrogate_gain


def test_surrogate_gain_is_the_dot_product() -> None:
    grad, step = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([0.2, 0.1, 4.0])
    assert surrogate_gain(grad, step).item() == 0.2 - 0.2 + 2.0


def test_gain_ratio_is_obtained_over_predicted() -> None:
    assert gain_ratio(0.5, 0.25) == 0.5
    assert gain_ratio(torch.tensor(-2.0), torch.tensor(1.0)) == -0.5
    assert math.isnan(gain_ratio(0.0, 1.0))
