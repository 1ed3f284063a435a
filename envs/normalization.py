"""VecNormalize statistics as plain tensors, and the switch between training and evaluation.

Checkpoints in rl-ig are loaded with ``torch.load(weights_only=True)``, so SB3's pickled
``VecNormalize.save`` cannot be used. :func:`normalization_state` flattens the statistics into a
dict of float64 tensors, floats and bools that ``torch.save`` writes and ``weights_only`` loading
reads back; :func:`load_normalization_state` puts them into a freshly built environment.

Keys of a non-empty state:

- ``obs_rms.mean``, ``obs_rms.var`` (tensors shaped like one observation), ``obs_rms.count``:
  observation statistics, present whenever the VecNormalize has them (always if ``norm_obs``);
- ``ret_rms.mean``, ``ret_rms.var`` (0-d tensors), ``ret_rms.count``: statistics of the
  discounted return whose std scales rewards;
- ``returns`` (tensor ``(n_envs,)``): the running discounted return of each env;
- ``clip_obs``, ``clip_reward``, ``gamma``, ``epsilon`` (floats), ``norm_obs``, ``norm_reward``
  (bools).

The ``training`` flag is not part of the state: whether statistics update is decided by the code
that uses the environment (:func:`set_training`), not by the checkpoint.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper, VecNormalize

NormalizationState = dict[str, torch.Tensor | float | bool]

_RMS_FIELDS: tuple[str, ...] = ("mean", "var", "count")
_FLOAT_FIELDS: tuple[str, ...] = ("clip_obs", "clip_reward", "gamma", "epsilon")
_BOOL_FIELDS: tuple[str, ...] = ("norm_obs", "norm_reward")
_REQUIRED_KEYS: tuple[str, ...] = (
    *(f"ret_rms.{field}" for field in _RMS_FIELDS),
    "returns",
    *_FLOAT_FIELDS,
    *_BOOL_FIELDS,
)

# norm_reward as configured for training, for VecNormalize wrappers that set_training switched to
# evaluation (which turns norm_reward off). Weak keys: an entry dies with its environment.
_TRAINING_NORM_REWARD: weakref.WeakKeyDictionary[VecNormalize, bool] = weakref.WeakKeyDictionary()


def find_vec_normalize(venv: VecEnv) -> VecNormalize | None:
    """The outermost VecNormalize in ``venv``'s chain of ``.venv`` wrappers, or None.

    Args:
        venv: A vectorised environment, possibly wrapped.

    Returns:
        ``venv`` itself if it is a VecNormalize, else the first one found by following
        ``.venv`` through VecEnvWrappers, else None.
    """
    current: VecEnv = venv
    while not isinstance(current, VecNormalize):
        if not isinstance(current, VecEnvWrapper):
            return None
        current = current.venv
    return current


def _configured_norm_reward(vec_normalize: VecNormalize) -> bool:
    """norm_reward as configured for training, even while set_training has it switched off."""
    return _TRAINING_NORM_REWARD.get(vec_normalize, bool(vec_normalize.norm_reward))


def _box_obs_rms(vec_normalize: VecNormalize) -> RunningMeanStd | None:
    """The observation statistics, or None when the wrapper keeps none (``norm_obs=False``)."""
    # vars(): VecEnvWrapper.__getattr__ would otherwise search the wrapped envs for "obs_rms".
    obs_rms = vars(vec_normalize).get("obs_rms")
    if isinstance(obs_rms, dict):
        raise TypeError(
            "normalization state supports Box observation spaces only, got a Dict observation "
            f"space with keys {sorted(obs_rms)}"
        )
    return obs_rms


def _rms_state(prefix: str, rms: RunningMeanStd) -> NormalizationState:
    """``{prefix}.mean``/``.var`` as float64 tensors (copies) and ``{prefix}.count`` as float."""
    return {
        f"{prefix}.mean": torch.tensor(np.asarray(rms.mean), dtype=torch.float64),
        f"{prefix}.var": torch.tensor(np.asarray(rms.var), dtype=torch.float64),
        f"{prefix}.count": float(rms.count),
    }


def normalization_state(venv: VecEnv) -> NormalizationState:
    """The VecNormalize statistics of ``venv`` as a flat dict of tensors, floats and bools.

    The result can be saved with ``torch.save`` and read with ``torch.load(weights_only=True)``;
    see the module docstring for its keys. Tensors are float64 copies, so later steps of
    ``venv`` do not change a state already taken.

    Args:
        venv: A vectorised environment that is, or wraps, a VecNormalize, or one that does not.

    Returns:
        The state, or an empty dict if ``venv`` has no VecNormalize.

    Raises:
        TypeError: If the VecNormalize normalises a Dict observation space.
    """
    vec_normalize = find_vec_normalize(venv)
    if vec_normalize is None:
        return {}
    state: NormalizationState = {}
    obs_rms = _box_obs_rms(vec_normalize)
    if obs_rms is not None:
        state.update(_rms_state("obs_rms", obs_rms))
    state.update(_rms_state("ret_rms", vec_normalize.ret_rms))
    state["returns"] = torch.tensor(np.asarray(vec_normalize.returns), dtype=torch.float64)
    state.update({name: float(getattr(vec_normalize, name)) for name in _FLOAT_FIELDS})
    state["norm_obs"] = bool(vec_normalize.norm_obs)
    state["norm_reward"] = _configured_norm_reward(vec_normalize)
    return state


def _as_float64(state: Mapping[str, object], key: str) -> np.ndarray:
    """``state[key]`` as a float64 numpy array that shares no memory with the state."""
    return torch.as_tensor(state[key], dtype=torch.float64).numpy().copy()


def _check_shape(state: Mapping[str, object], key: str, expected: tuple[int, ...]) -> None:
    """Raise a one-line ValueError unless ``state[key]`` has shape ``expected``."""
    found = tuple(torch.as_tensor(state[key]).shape)
    if found != expected:
        raise ValueError(
            f"normalization state {key!r} has shape {found} but this environment expects "
            f"{expected}; load the state into an environment of the kind it was saved from"
        )


def _rms_from_state(
    state: Mapping[str, object], prefix: str, shape: tuple[int, ...]
) -> RunningMeanStd:
    """A RunningMeanStd of ``shape`` holding ``state``'s ``prefix`` statistics (shape-checked)."""
    rms = RunningMeanStd(shape=shape)
    for field in ("mean", "var"):
        _check_shape(state, f"{prefix}.{field}", shape)
        setattr(rms, field, _as_float64(state, f"{prefix}.{field}"))
    rms.count = float(state[f"{prefix}.count"])  # type: ignore[arg-type]
    return rms


def _check_keys(state: Mapping[str, object]) -> None:
    """Raise a one-line ValueError if a key that every non-empty state has is missing."""
    required = [*_REQUIRED_KEYS]
    if state.get("norm_obs"):
        required += [f"obs_rms.{field}" for field in _RMS_FIELDS]
    missing = [key for key in required if key not in state]
    if missing:
        raise ValueError(
            f"normalization state is missing {', '.join(missing)}; "
            "pass a dict produced by normalization_state"
        )


def _require_vec_normalize(venv: VecEnv, state: Mapping[str, object]) -> VecNormalize | None:
    """The VecNormalize to load ``state`` into; None if both are absent; raise on a mismatch."""
    vec_normalize = find_vec_normalize(venv)
    if vec_normalize is None and state:
        raise ValueError(
            "normalization state is non-empty but the environment has no VecNormalize; build it "
            "with the normalize_obs/normalize_reward settings it was trained with"
        )
    if vec_normalize is not None and not state:
        raise ValueError(
            "normalization state is empty but the environment has a VecNormalize; build it "
            "with normalize_obs=False and normalize_reward=False, as it was trained"
        )
    return vec_normalize


def _restore_returns(vec_normalize: VecNormalize, state: Mapping[str, object]) -> None:
    """Restore the running discounted returns, or zero them if the number of envs differs."""
    if tuple(torch.as_tensor(state["returns"]).shape) == (vec_normalize.num_envs,):
        vec_normalize.returns = _as_float64(state, "returns")
    else:
        # As SB3's VecNormalize.load does: the per-env returns belong to the saved envs.
        vec_normalize.returns = np.zeros(vec_normalize.num_envs)


def _restore_flags(vec_normalize: VecNormalize, state: Mapping[str, object]) -> None:
    """Restore clip values, gamma, epsilon and the norm flags, respecting evaluation mode."""
    for name in _FLOAT_FIELDS:
        setattr(vec_normalize, name, float(state[name]))  # type: ignore[arg-type]
    vec_normalize.norm_obs = bool(state["norm_obs"])
    if vec_normalize in _TRAINING_NORM_REWARD:
        # In evaluation mode: keep rewards raw now, restore the setting for set_training(True).
        _TRAINING_NORM_REWARD[vec_normalize] = bool(state["norm_reward"])
    else:
        vec_normalize.norm_reward = bool(state["norm_reward"])


def _restore_obs_rms(vec_normalize: VecNormalize, state: Mapping[str, object]) -> None:
    """Restore the observation statistics, checking them against the observation space."""
    obs_space = vec_normalize.observation_space
    if not isinstance(obs_space, spaces.Box):
        raise TypeError(
            "normalization state has observation statistics but this environment's "
            f"observation space is {type(obs_space).__name__}, not Box"
        )
    # SB3 annotates obs_rms with its Dict-space type; for a Box space it is one RunningMeanStd.
    vec_normalize.obs_rms = _rms_from_state(  # type: ignore[assignment]
        state, "obs_rms", tuple(obs_space.shape)
    )


def load_normalization_state(venv: VecEnv, state: Mapping[str, object]) -> None:
    """Restore statistics taken by :func:`normalization_state` into ``venv``, in place.

    Everything in the state is restored: statistics, clip values, gamma, epsilon and the
    ``norm_obs``/``norm_reward`` flags. ``training`` is left as it is; call
    :func:`set_training` afterwards to freeze the statistics for evaluation. The running
    discounted ``returns`` are restored when ``venv`` has as many envs as the saved one and
    zeroed otherwise (e.g. evaluating a policy trained on 8 envs with 1).

    Args:
        venv: The environment to restore into; built like the one the state was taken from.
        state: A dict from :func:`normalization_state`, possibly via ``torch.save`` and
            ``torch.load(weights_only=True)``. An empty dict means "no normalisation".

    Raises:
        ValueError: If the state is non-empty but ``venv`` has no VecNormalize, or empty while
            ``venv`` has one, if keys are missing, or if a statistic's shape does not match the
            environment's observation space (the message names both shapes).
        TypeError: If the state has observation statistics and the observation space is not
            a Box.
    """
    vec_normalize = _require_vec_normalize(venv, state)
    if vec_normalize is None:
        return
    _check_keys(state)
    if "obs_rms.mean" in state:
        _restore_obs_rms(vec_normalize, state)
    vec_normalize.ret_rms = _rms_from_state(state, "ret_rms", ())
    _restore_returns(vec_normalize, state)
    _restore_flags(vec_normalize, state)


def set_training(venv: VecEnv, training: bool) -> None:
    """Switch ``venv``'s VecNormalize between training and evaluation mode.

    ``training=False`` (evaluation) freezes the statistics (``training=False``: observations are
    normalised with the saved mean and variance, nothing is updated) and switches reward
    normalisation off, so that rewards returned by ``step`` are the raw rewards an evaluation
    reports. ``training=True`` resumes updating and restores ``norm_reward`` to the value it had
    before evaluation mode (or that :func:`load_normalization_state` set meanwhile).
    ``info["episode"]`` holds raw returns in both modes. Without a VecNormalize, nothing happens.

    Args:
        venv: A vectorised environment, possibly wrapping a VecNormalize.
        training: True to update statistics and normalise rewards as configured; False to
            evaluate.
    """
    vec_normalize = find_vec_normalize(venv)
    if vec_normalize is None:
        return
    if training:
        vec_normalize.norm_reward = _TRAINING_NORM_REWARD.pop(
            vec_normalize, vec_normalize.norm_reward
        )
    elif vec_normalize not in _TRAINING_NORM_REWARD:
        _TRAINING_NORM_REWARD[vec_normalize] = bool(vec_normalize.norm_reward)
        vec_normalize.norm_reward = False
    vec_normalize.training = training
