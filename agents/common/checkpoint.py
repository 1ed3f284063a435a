"""The agents' checkpoints: :mod:`rl_ig.checkpoint`'s format, re-exported for ``agents``."""

from rl_ig.checkpoint import (
    FORMAT,
    VERSION,
    CheckpointError,
    atomic_write,
    load_checkpoint,
    save_checkpoint,
)

__all__ = [
    "FORMAT",
    "VERSION",
    "CheckpointError",
    "atomic_write",
    "load_checkpoint",
    "save_checkpoint",
]
