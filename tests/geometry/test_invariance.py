"""The natural gradient is invariant to a reparameterisation of the policy; the plain one is not.

Bounds measured on 2026-12-02 with the default :class:`InvarianceConfig` (seed 0): natural
step KL(π_A' || π_B') 4.9e-32 with the two steps landing 5.2e-14 apart (relative to the step);
plain step KL 1.2e-3, landing 1.9 step lengths apart; CG relative residual 2.5e-14.
"""

from __future__ import annotations

import pytest
import torch

from rl_ig.geometry.invariance import (
    InvarianceConfig,
    InvarianceResult,
    canonical_parameters,
    gaussian_policy,
    invariance_experiment,
    make_batch,
    reparameterisation,
)

PLAIN_KL_FLOOR = 1e-4
"""A tenth of the plain step's measured KL between the two coordinate systems' policies."""


@pytest.fixture(scope="module")
def result() -> InvarianceResult:
    return invariance_experiment(InvarianceConfig())


def test_both_parameterisations_define_the_same_policy() -> None:
    config = InvarianceConfig()
    generator = torch.Generator().manual_seed(config.seed)
    theta_a = canonical_parameters(config, generator)
    reparam = reparameterisation(config, generator)
    obs = make_batch(config, theta_a, generator).obs
    theta_b = reparam.from_canonical(theta_a)
    assert all((b - a).abs().max() > 1e-3 for a, b in zip(theta_a[:3], theta_b[:3]))
    dist_a = gaussian_policy(theta_a, obs)
    dist_b = gaussian_policy(reparam.to_canonical(theta_b), obs)
    torch.testing.assert_close(dist_b.mean, dist_a.mean, rtol=0, atol=1e-13)
    torch.testing.assert_close(dist_b.stddev, dist_a.stddev, rtol=0, atol=1e-13)


def test_the_experiment_starts_from_one_policy_and_solves_tightly(result: InvarianceResult) -> None:
    assert result.initial_kl < 1e-24
    assert result.cg_residual < 1e-10
    assert result.n_params == 4 * 16 + 16 + 16 * 2 + 2 + 2


def test_every_step_moves_the_policy_in_a_by_the_target_kl(result: InvarianceResult) -> None:
    for step in (result.natural, result.plain):
        assert step.kl_a == pytest.approx(0.01, rel=1e-9)


def test_natural_steps_reach_the_same_policy_in_both_coordinates(
    result: InvarianceResult,
) -> None:
    assert result.natural.kl_between < 1e-8
    assert result.natural.mismatch < 1e-9
    assert result.natural.kl_b == pytest.approx(0.01, rel=1e-6)


def test_plain_steps_reach_different_policies(result: InvarianceResult) -> None:
    assert result.plain.kl_between > PLAIN_KL_FLOOR
    assert result.plain.kl_between > 100 * result.natural.kl_between
    assert result.plain.mismatch > 0.5
    assert abs(result.plain.kl_b - 0.01) > 1e-3


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("hidden", 0, "hidden must be an integer >= 1, got 0"),
        ("target_kl", 0.0, "target_kl must be > 0, got 0.0"),
        ("scale_range", 0.5, "scale_range must be >= 1, got 0.5"),
    ],
)
def test_bad_settings_are_named(field: str, value: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        InvarianceConfig(**{field: value})
