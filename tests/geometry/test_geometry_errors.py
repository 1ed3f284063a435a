"""Bad arguments raise one-line errors that name the argument and the allowed range."""

from __future__ import annotations

import pytest
import torch
from geometry_reference import flat, make
from torch import nn

from rl_ig.fisher import PolicyFisher, detach_distribution
from rl_ig.geometry import (
    StepGeometry,
    at_parameters,
    condition_number,
    factor_condition_numbers,
    fisher_cosine,
    flatten_directions,
    kfac_flat_direction,
    kfac_relative_error,
    kl_stats,
    lanczos,
    measure_step,
    natural_gradient,
    step_norms,
    surrogate_gain,
    top_eigenvalues,
)
from rl_ig.optim import KFAC


@pytest.fixture
def setup() -> tuple[PolicyFisher, torch.Tensor, torch.Tensor]:
    policy, obs = make("gaussian")
    return PolicyFisher(policy), obs, flat(policy)


def test_vector_lengths(setup: tuple) -> None:
    fisher, obs, theta = setup
    short = torch.zeros(3)
    with pytest.raises(ValueError, match=r"^step must be a flat vector of 28 entries"):
        step_norms(fisher, obs, short)
    with pytest.raises(ValueError, match=r"^direction must be a flat vector of 28 entries"):
        fisher_cosine(fisher, obs, theta, short)
    with pytest.raises(ValueError, match=r"^grad must be a flat vector of 28 entries"):
        natural_gradient(fisher, obs, theta.reshape(4, 7))
    with pytest.raises(ValueError, match="^grad and step must have the same length, got 28 and 3"):
        surrogate_gain(theta, short)
    with pytest.raises(
        ValueError, match="^kfac_direction and cg_direction must have the same length"
    ):
        kfac_relative_error(short, theta)
    with pytest.raises(TypeError, match="^step must be a torch.Tensor, got list"):
        step_norms(fisher, obs, [0.0] * 28)  # type: ignore[arg-type]
    with (
        pytest.raises(ValueError, match=r"^theta must be a flat vector of 28 entries"),
        at_parameters(fisher.params, short),
    ):
        pass
    with (
        pytest.raises(ValueError, match="^params must hold at least one tensor"),
        at_parameters([], short),
    ):
        pass


def test_settings_out_of_range(setup: tuple) -> None:
    fisher, obs, theta = setup
    with pytest.raises(
        ValueError, match=r"^k must be an int in \[1, min\(iters, dim\)\] = \[1, 5\], got 0"
    ):
        top_eigenvalues(fisher, obs, k=0, iters=5)
    with pytest.raises(ValueError, match=r"= \[1, 5\], got 6"):
        top_eigenvalues(fisher, obs, k=6, iters=5)
    with pytest.raises(ValueError, match="^iters must be an int >= 1, got 0"):
        top_eigenvalues(fisher, obs, k=1, iters=0)
    with pytest.raises(ValueError, match="^damping must be >= 0, got -0.1"):
        natural_gradient(fisher, obs, theta, damping=-0.1)
    with pytest.raises(ValueError, match="^obs must hold at least one state"):
        step_norms(fisher, obs[:0], theta)
    generator = torch.Generator()
    with pytest.raises(ValueError, match="^iters must be an int >= 1, got 0"):
        lanczos(lambda v: v, 4, 0, generator, torch.float64, "cpu")
    with pytest.raises(ValueError, match="^dim must be an int >= 1, got 0"):
        lanczos(lambda v: v, 0, 3, generator, torch.float64, "cpu")
    with pytest.raises(TypeError, match="^generator must be a torch.Generator, got int"):
        lanczos(lambda v: v, 4, 3, 0, torch.float64, "cpu")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="^dtype must be a floating-point dtype"):
        lanczos(lambda v: v, 4, 3, generator, torch.int64, "cpu")


def test_measure_step_settings(setup: tuple) -> None:
    fisher, obs, theta = setup
    old = detach_distribution(fisher.distribution(obs))
    zero = torch.zeros_like(theta)
    cases = [
        ({"cg_iters": 0}, "^cg_iters must be an int >= 1, got 0"),
        ({"cg_damping": -1.0}, "^cg_damping must be >= 0, got -1.0"),
        ({"cg_tol": float("nan")}, "^cg_tol must be >= 0, got nan"),
        ({"eig_k": -1}, "^eig_k must be an int >= 0, got -1"),
        ({"eig_iters": 0}, "^eig_iters must be an int >= 1, got 0"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            measure_step(fisher, obs, old, theta, zero, zero, **kwargs)
    with pytest.raises(ValueError, match="^theta_old must be a flat vector of 28 entries"):
        measure_step(fisher, obs, old, theta[:5], zero, zero)
    with pytest.raises(ValueError, match="^step must be a flat vector of 28 entries"):
        measure_step(fisher, obs, old, theta, zero[:5], zero)
    with pytest.raises(ValueError, match="^grad must be a flat vector of 28 entries"):
        measure_step(fisher, obs, old, theta, zero, zero[:5])
    with pytest.raises(TypeError, match="^prefix must be a str, got int"):
        StepGeometry(
            kl_mean=0, kl_max=0, fisher_norm=0, euclidean_norm=0, ng_cosine=0, predicted_gain=0
        ).as_dict(prefix=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="^obs must be a torch.Tensor"):
        kl_stats(fisher, obs.tolist(), old)  # type: ignore[arg-type]


def test_kfac_arguments() -> None:
    layer = nn.Linear(3, 2)
    opt = KFAC(layer, lr=0.0)
    sgd = torch.optim.SGD(layer.parameters(), lr=0.1)
    with pytest.raises(TypeError, match="^optimizer must be an rl_ig.optim.KFAC, got SGD"):
        factor_condition_numbers(sgd)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="^optimizer must be an rl_ig.optim.KFAC, got SGD"):
        kfac_flat_direction(sgd, list(layer.parameters()), [None, None])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^params\[0\] is not a parameter of the KFAC optimizer"):
        kfac_flat_direction(opt, [nn.Parameter(torch.zeros(2))], [None])
    with pytest.raises(ValueError, match=r"^grads must hold one entry per parameter \(2\), got 1"):
        kfac_flat_direction(opt, list(layer.parameters()), [None])
    with pytest.raises(ValueError, match=r"^grads must be a flat vector of 8 entries"):
        kfac_flat_direction(opt, list(layer.parameters()), torch.zeros(7))
    with pytest.raises(ValueError, match=r"^directions\[1\] must have shape \(2,\), got \(3,\)"):
        flatten_directions([None, torch.zeros(3)], list(layer.parameters()))
    with pytest.raises(ValueError, match=r"^directions must hold one entry per parameter \(2\)"):
        flatten_directions([None], list(layer.parameters()))
    with pytest.raises(ValueError, match=r"^matrix must be square \(n, n\), got shape \(2, 3\)"):
        condition_number(torch.zeros(2, 3))
