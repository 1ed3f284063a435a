"""Environment factory: short names, vectorisation, normalisation, seeding.

``make_vec_env("HalfCheetah", n_envs=8, seed=0, normalize_obs=True)`` builds a seeded
``VecNormalize(VecMonitor(DummyVecEnv))`` of the newest registered HalfCheetah; the helpers in
:mod:`envs.normalization` save its statistics as plain tensors and switch it to evaluation.
"""

from envs.factory import VEC_ENV_KINDS, VecEnvConfig, action_space, build_vec_env, make_vec_env
from envs.normalization import (
    NormalizationState,
    find_vec_normalize,
    load_normalization_state,
    normalization_state,
    set_training,
)
from envs.registry import SHORT_NAMES, resolve_env_id, short_names

__all__ = [
    "SHORT_NAMES",
    "VEC_ENV_KINDS",
    "NormalizationState",
    "VecEnvConfig",
    "action_space",
    "build_vec_env",
    "find_vec_normalize",
    "load_normalization_state",
    "make_vec_env",
    "normalization_state",
    "resolve_env_id",
    "set_training",
    "short_names",
]
