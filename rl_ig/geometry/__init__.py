"""Diagnostics of a policy parameter step: KL, Fisher norm, cosine to the natural gradient,
the top of the Fisher spectrum, and the quality of K-FAC's Kronecker factors.

Vectors are flat, in the ``torch.nn.utils.parameters_to_vector`` layout of ``fisher.params``.
Fisher quantities are taken at the policy's current parameters; :func:`measure_step` (or
:func:`at_parameters`) moves them to ``θ_old`` and back.
"""

from rl_ig.geometry.gain import gain_ratio, surrogate_gain
from rl_ig.geometry.kfac import (
    condition_number,
    factor_condition_numbers,
    flatten_directions,
    kfac_flat_direction,
    kfac_relative_error,
)
from rl_ig.geometry.kl import kl_stats
from rl_ig.geometry.metric import (
    fisher_cosine,
    natural_gradient,
    natural_gradient_cosine,
    step_norms,
)
from rl_ig.geometry.parameters import at_parameters
from rl_ig.geometry.spectrum import lanczos, top_eigenvalues
from rl_ig.geometry.step import StepGeometry, measure_step

__all__ = [
    "StepGeometry",
    "at_parameters",
    "condition_number",
    "factor_condition_numbers",
    "fisher_cosine",
    "flatten_directions",
    "gain_ratio",
    "kfac_flat_direction",
    "kfac_relative_error",
    "kl_stats",
    "lanczos",
    "measure_step",
    "natural_gradient",
    "natural_gradient_cosine",
    "step_norms",
    "surrogate_gain",
    "top_eigenvalues",
]
