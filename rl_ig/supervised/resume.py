"""What a supervised checkpoint holds, and the check that it continues the run asked for."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer

from rl_ig.supervised.checkpoint import CheckpointError
from rl_ig.supervised.fisher import TargetSampler
from rl_ig.supervised.sampler import MinibatchSampler

META_KEYS = ("task", "task_spec", "optim", "lr", "hp", "seed", "batch_size", "step")
_FLAGS = {
    "task": "--task",
    "optim": "--optim",
    "seed": "--seed",
    "batch_size": "--batch-size",
    "lr": "--lr",
}


def _plain(value: Any) -> Any:
    """``value`` as JSON would give it back (tuples become lists), for comparisons."""
    return json.loads(json.dumps(value))


def check_resume(meta: Mapping[str, Any], path: str, wanted: Mapping[str, Any], steps: int) -> None:
    """Check that the checkpoint ``meta`` continues the run described by ``wanted`` (the same
    :data:`META_KEYS` but ``step``) up to ``steps``.

    Raises:
        CheckpointError: for metadata with keys missing.
        ValueError: naming the first setting that differs and the flag that fixes it, or a
            checkpoint that already has ``steps`` steps.
    """
    missing = [key for key in META_KEYS if key not in meta]
    if missing:
        raise CheckpointError(f"{path} is a damaged rl-ig checkpoint (no {', '.join(missing)})")
    for key, flag in _FLAGS.items():
        if _plain(meta[key]) != _plain(wanted[key]):
            raise ValueError(
                f"checkpoint {path} was trained with {key} {meta[key]!r}, not {wanted[key]!r}; "
                f"pass {flag} {meta[key]}"
            )
    if _plain(meta["task_spec"]) != _plain(wanted["task_spec"]):
        raise ValueError(
            f"checkpoint {path} was trained on {meta['task']} data {meta['task_spec']}, not "
            f"{wanted['task_spec']}; resume with the data it was trained on"
        )
    saved_hp = dict(meta["hp"])
    if meta["optim"] == "kfac":
        # K-FAC checkpoints that do not name their Fisher were all trained with the empirical one.
        saved_hp.setdefault("fisher", "empirical")
    if _plain(saved_hp) != _plain(wanted["hp"]):
        raise ValueError(
            f"checkpoint {path} was trained with hyperparameters {saved_hp}, not "
            f"{wanted['hp']}; resume with the --hp it was trained with"
        )
    if meta["step"] >= steps:
        raise ValueError(
            f"checkpoint {path} already has {meta['step']} steps, not fewer than --steps "
            f"{steps}; pass a larger --steps"
        )


def training_state(
    model: nn.Module,
    optimizer: Optimizer,
    sampler: MinibatchSampler,
    target_sampler: TargetSampler | None = None,
) -> dict[str, Any]:
    """Everything that makes a resumed run continue bit for bit: parameters, optimizer state,
    the sampler's generator and position, the global CPU RNG and, for K-FAC with the sampled
    Fisher, the generator of the sampled targets."""
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "sampler": sampler.state_dict(),
        "torch_rng": torch.get_rng_state(),
    }
    if target_sampler is not None:
        state["target_sampler"] = target_sampler.state_dict()
    return state


def restore_training_state(
    state: Mapping[str, Any],
    path: str,
    model: nn.Module,
    optimizer: Optimizer,
    sampler: MinibatchSampler,
    target_sampler: TargetSampler | None = None,
) -> None:
    """Load :func:`training_state` back into freshly built objects.

    Raises:
        CheckpointError: one line, if the state does not fit them.
    """
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        sampler.load_state_dict(state["sampler"])
        torch.set_rng_state(state["torch_rng"])
        if target_sampler is not None:
            target_sampler.load_state_dict(state["target_sampler"])
    except (KeyError, RuntimeError, ValueError, TypeError) as exc:
        first = " ".join(str(exc).split())[:200]
        raise CheckpointError(
            f"{path} does not fit this model and optimizer ({first}); resume with the settings "
            "it was trained with"
        ) from None
