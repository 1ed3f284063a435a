"""Where a supervised run writes, and the CSV and JSON writers it uses."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rl_ig.supervised.checkpoint import atomic_write


@dataclass(frozen=True)
class RunPaths:
    """The outputs of a run, all inside ``logdir`` (TensorBoard event files go there too)."""

    logdir: Path

    @property
    def progress(self) -> Path:
        """One row per optimizer step: loss, step time, optimizer info."""
        return self.logdir / "progress.csv"

    @property
    def evaluations(self) -> Path:
        """One row per evaluation: train-subset and test loss and metrics."""
        return self.logdir / "evaluations.csv"

    @property
    def checkpoint(self) -> Path:
        return self.logdir / "checkpoint.pt"

    @property
    def final_model(self) -> Path:
        return self.logdir / "final.pt"

    @property
    def summary(self) -> Path:
        return self.logdir / "run_summary.json"

    def as_dict(self) -> dict[str, str]:
        names = ("progress", "evaluations", "checkpoint", "final_model", "summary")
        return {"logdir": str(self.logdir), **{n: str(getattr(self, n)) for n in names}}


def prepare_logdir(logdir: str | Path) -> Path:
    """Create ``logdir`` and check that files can be written in it.

    Raises:
        OSError: one line naming the directory and the reason.
    """
    path = Path(logdir)
    probe = path / ".write_probe"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise OSError(
            f"cannot write to logdir {path}: {reason}; pass a writable --logdir"
        ) from None
    return path


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` as indented JSON, atomically."""
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n"))


class CsvLog:
    """Rows with a ``step`` column, appended to a CSV file one at a time (each is on disk as soon
    as it is written).

    The header comes from the first row; a key that first appears in a later row extends it (the
    file is rewritten atomically, earlier rows blank in the new column). With ``keep_until``,
    an existing file is continued: rows with ``step <= keep_until`` are kept and later ones (from
    training that went on past the checkpoint being resumed) dropped.
    """

    def __init__(self, path: Path, *, keep_until: int | None = None) -> None:
        self.path = path
        self.fields: list[str] = []
        if keep_until is not None and path.is_file():
            with path.open(newline="") as f:
                reader = csv.DictReader(f)
                self.fields = list(reader.fieldnames or [])
                rows = [r for r in reader if int(float(r["step"])) <= keep_until]
            self._rewrite(self.fields, rows)
        else:
            path.unlink(missing_ok=True)

    def write(self, row: Mapping[str, Any]) -> None:
        """Append ``row``; extend the header first if it has new keys."""
        new = [key for key in row if key not in self.fields]
        if new and self.fields:
            with self.path.open(newline="") as f:
                rows = list(csv.DictReader(f))
            self._rewrite([*self.fields, *new], rows)
        elif new:
            self.fields = list(row)
            with self.path.open("w", newline="") as f:
                csv.DictWriter(f, self.fields).writeheader()
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, self.fields, restval="").writerow(row)

    def _rewrite(self, fields: list[str], rows: list[dict[str, str]]) -> None:
        def write(tmp: Path) -> None:
            with tmp.open("w", newline="") as out:
                writer = csv.DictWriter(out, fields, restval="")
                writer.writeheader()
                writer.writerows(rows)

        atomic_write(self.path, write)
        self.fields = fields
