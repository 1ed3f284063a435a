"""Checkpoints as plain tensors and JSON, written atomically, loaded with ``weights_only``; shared
by the RL agents and the supervised trainer.

A checkpoint is one ``torch.save`` file holding a dict with a format tag, a version, the
metadata as a JSON string and a nested dict of tensors (and the plain numbers of optimizer
states). ``torch.load(weights_only=True)`` reads it, so a checkpoint file can never run code.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

FORMAT = "rl-ig-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A file that is missing, unreadable, corrupt or not an rl-ig checkpoint."""


def atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path``: readers see the old or the new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(path: str | os.PathLike, meta: dict[str, Any], state: dict[str, Any]) -> Path:
    """Write ``meta`` (JSON-serialisable) and ``state`` (tensors and numbers) to ``path``."""
    path = Path(path)
    payload = {"format": FORMAT, "version": VERSION, "meta": json.dumps(meta), "state": state}
    atomic_write(path, lambda tmp: torch.save(payload, tmp))
    return path


def load_checkpoint(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read a checkpoint written by :func:`save_checkpoint`: ``(meta, state)``.

    Raises:
        CheckpointError: one line naming the file and the problem.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; check the path")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, OSError):
        raise CheckpointError(
            f"{path} is not a readable rl-ig checkpoint (corrupt, truncated, or a file that "
            "would need to run code to load); use a checkpoint written by rl-ig"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not an rl-ig checkpoint (a foreign file); use one written by rl-ig"
        )
    if payload.get("version") != VERSION:
        raise CheckpointError(
            f"{path} has checkpoint version {payload.get('version')!r}, this rl-ig reads "
            f"version {VERSION}; use the rl-ig release that wrote it"
        )
    try:
        meta = json.loads(payload["meta"])
        state = payload["state"]
    except (KeyError, TypeError, json.JSONDecodeError):
        raise CheckpointError(f"{path} is a damaged rl-ig checkpoint (bad metadata)") from None
    return meta, state
