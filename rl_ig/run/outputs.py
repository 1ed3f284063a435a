"""Where a run writes: the files inside its logdir, the check that the logdir is writable, and
atomic JSON."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rl_ig.checkpoint import atomic_write


@dataclass(frozen=True)
class RunPaths:
    """The outputs of a run, all inside ``logdir`` (TensorBoard event files go there too)."""

    logdir: Path

    @property
    def progress(self) -> Path:
        """One row per update or optimizer step (see :class:`~rl_ig.run.csvlog.CsvLog`)."""
        return self.logdir / "progress.csv"

    @property
    def evaluations(self) -> Path:
        """One row per evaluation."""
        return self.logdir / "evaluations.csv"

    @property
    def geometry(self) -> Path:
        """RL runs: one row per update whose step geometry was measured (``geometry/`` keys)."""
        return self.logdir / "geometry.csv"

    @property
    def checkpoint(self) -> Path:
        """The latest checkpoint written during training (or on Ctrl-C)."""
        return self.logdir / "checkpoint.pt"

    @property
    def final_model(self) -> Path:
        """The checkpoint written when training completes."""
        return self.logdir / "final.pt"

    @property
    def summary(self) -> Path:
        """``run_summary.json``: how the run ended and with which settings."""
        return self.logdir / "run_summary.json"

    def as_dict(self) -> dict[str, str]:
        """Every path as a string, keyed by its name (``logdir`` included), for summaries."""
        names = ("progress", "evaluations", "checkpoint", "final_model", "summary")
        return {"logdir": str(self.logdir), **{n: str(getattr(self, n)) for n in names}}


def prepare_logdir(logdir: str | Path) -> Path:
    """Create ``logdir`` (and its parents) and check that files can be written in it.

    Args:
        logdir: the directory a run writes to.

    Returns:
        ``logdir`` as a :class:`~pathlib.Path`.

    Raises:
        OSError: one line naming the directory, the reason and the fix (``--logdir``).
    """
    return writable_dir(Path(logdir), "logdir", "--logdir")


def writable_dir(path: Path, name: str, flag: str) -> Path:
    """Create ``path`` and check that a file can be written in it.

    Raises:
        OSError: ``cannot write to <name> <path>: <reason>; pass a writable <flag>``.
    """
    probe = path / ".write_probe"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise OSError(f"cannot write to {name} {path}: {reason}; pass a writable {flag}") from None
    return path


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` as JSON indented by 2 with a final newline, atomically (a temporary file
    renamed onto ``path``: readers see the old file or the new one, never half of one)."""
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n"))
