"""CSV logs written one row at a time: ``progress.csv`` and ``evaluations.csv`` of every run."""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rl_ig.checkpoint import atomic_write

STEP = "step"
"""The column that ``keep_until`` compares."""


class CsvLog:
    """Rows appended to a CSV file one at a time (each is on disk as soon as it is written).

    The header comes from the first row; a row's missing keys are left blank. A key that first
    appears in a later row (``rollout/ep_rew_mean`` once an episode has ended) extends the
    header, and the file is rewritten atomically with the earlier rows blank in the new column.

    An existing file at ``path`` is

    - deleted, by default (a new run);
    - continued as it is with ``append=True``: its header is read and rows go after its last
      line (an RL run resumed from a checkpoint);
    - continued up to a step with ``keep_until``: rows whose ``step`` column is at most
      ``keep_until`` are kept and later ones (from training that went on past the checkpoint
      being resumed) dropped; the file is rewritten atomically (a supervised run resumed bit
      for bit).

    Args:
        path: the CSV file.
        append: continue the existing file as it is.
        keep_until: continue the existing file up to this step.

    Raises:
        ValueError: if both ``append`` and ``keep_until`` are given.
    """

    def __init__(self, path: Path, *, append: bool = False, keep_until: int | None = None) -> None:
        if append and keep_until is not None:
            raise ValueError("pass append=True or keep_until, not both")
        self.path = path
        self.fields: list[str] = []
        if append and path.is_file():
            with path.open(newline="") as f:
                self.fields = next(csv.reader(f), [])
        elif keep_until is not None and path.is_file():
            self._keep_until(keep_until)
        else:
            path.unlink(missing_ok=True)

    def write(self, row: Mapping[str, Any]) -> None:
        """Append ``row``; extend the header first if it has new keys."""
        new = [key for key in row if key not in self.fields]
        if new and self.fields:
            self._rewrite([*self.fields, *new], self._read())
        elif new:
            self.fields = list(row)
            with self.path.open("w", newline="") as f:
                csv.DictWriter(f, self.fields).writeheader()
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, self.fields, restval="").writerow(row)

    def _keep_until(self, last_step: int) -> None:
        """Rewrite the file with its header and the rows whose ``step`` is ``<= last_step``."""
        with self.path.open(newline="") as f:
            reader = csv.DictReader(f)
            fields = list(reader.fieldnames or [])
            rows = [r for r in reader if int(float(r[STEP])) <= last_step]
        self._rewrite(fields, rows)

    def _read(self) -> list[dict[str, str]]:
        """The file's rows, keyed by its header."""
        with self.path.open(newline="") as f:
            return list(csv.DictReader(f))

    def _rewrite(self, fields: list[str], rows: list[dict[str, str]]) -> None:
        """Replace the file, atomically, by ``rows`` under the header ``fields``."""

        def write(tmp: Path) -> None:
            with tmp.open("w", newline="") as out:
                writer = csv.DictWriter(out, fields, restval="")
                writer.writeheader()
                writer.writerows(rows)

        atomic_write(self.path, write)
        self.fields = fields
