"""Checkpoints of supervised runs: plain tensors and JSON, written atomically, loaded with
``torch.load(weights_only=True)`` so that a checkpoint file can never run code.

The file layout is the one of every rl-ig checkpoint: a dict with a format tag, a version, the
metadata as a JSON string (here with ``"kind": "supervised"``) and a nested dict of tensors.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rl_ig import checkpoint
from rl_ig.checkpoint import CheckpointError, atomic_write

__all__ = ["KIND", "CheckpointError", "atomic_write", "load_checkpoint", "save_checkpoint"]

KIND = "supervised"


def save_checkpoint(
    path: str | os.PathLike[str], meta: dict[str, Any], state: dict[str, Any]
) -> Path:
    """Write ``meta`` (JSON-serialisable; ``kind`` is added) and ``state`` to ``path``."""
    return checkpoint.save_checkpoint(path, {"kind": KIND, **meta}, state)


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read a supervised checkpoint: ``(meta, state)``.

    Raises:
        CheckpointError: one line naming the file and the problem (including an RL agent's
            checkpoint given where a supervised one is expected).
    """
    meta, state = checkpoint.load_checkpoint(path)
    if not isinstance(meta, dict) or not isinstance(state, dict):
        raise CheckpointError(f"{path} is a damaged rl-ig checkpoint (bad metadata)")
    if meta.get("kind") != KIND:
        what = f"a {meta['algo']!r} agent" if "algo" in meta else "something else"
        raise CheckpointError(
            f"{path} holds {what}, not a supervised run; use a checkpoint written by "
            "scripts/train_supervised.py"
        )
    return meta, state
