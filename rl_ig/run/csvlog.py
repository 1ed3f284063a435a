"""CSV logs written one row at a time: ``progress.csv`` and ``evaluations.csv`` of every run."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rl_ig.checkpoint import atomic_write

STEP = "step"
"""The column that ``keep_until`` compares unless told another."""


class CsvLogError(ValueError):
    """An existing CSV log that cannot be continued; the message names the file and the fix."""


class CsvLog:
    """Rows appended to a CSV file one at a time (each is on disk as soon as it is written).

    The header comes from the first row; a row's missing keys are left blank. A key that first
    appears in a later row (``rollout/ep_rew_mean`` once an episode has ended) extends the
    header, and the file is rewritten atomically with the earlier rows blank in the new column.

    An existing file at ``path`` is

    - deleted, by default (a new run);
    - continued as it is with ``append=True``: its header is read and rows go after its last
      line;
    - continued up to a step with ``keep_until``: rows whose ``step_column`` is at most
      ``keep_until`` are kept and later ones (from training that went on past the checkpoint
      being resumed) dropped; the file is rewritten atomically (a run resumed from a
      checkpoint).

    A last line cut short by a crash (no line end) is never glued to the next row: the file is
    rewritten atomically with that row completed by blank cells. With ``keep_until`` the row is
    dropped when its step is past ``keep_until`` or may itself be cut short (its last cell).
    A file whose only line, the header, is cut short holds no rows and is started afresh.

    Args:
        path: the CSV file.
        append: continue the existing file as it is.
        keep_until: continue the existing file up to this step.
        step_column: the column ``keep_until`` compares (``time/total_timesteps`` in an RL
            ``progress.csv``).

    Raises:
        ValueError: if both ``append`` and ``keep_until`` are given.
        CsvLogError: if the existing file cannot be continued (a row longer than the header;
            with ``keep_until``, no ``step_column`` or a step that is not a number).
    """

    def __init__(
        self,
        path: Path,
        *,
        append: bool = False,
        keep_until: int | None = None,
        step_column: str = STEP,
    ) -> None:
        if append and keep_until is not None:
            raise ValueError("pass append=True or keep_until, not both")
        self.path = path
        self.step_column = step_column
        self.fields: list[str] = []
        if (append or keep_until is not None) and path.is_file():
            self._continue(keep_until)
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

    def _continue(self, keep_until: int | None) -> None:
        """Read the existing file and keep what the next rows can follow (see the class)."""
        fields, rows, cut = _read_lines(self.path)
        if not fields:
            self.path.unlink()
        elif keep_until is not None:
            self._rewrite(fields, self._rows_up_to(fields, rows, cut, keep_until))
        elif cut:
            self._rewrite(fields, [_as_row(self.path, fields, cells) for _, cells in rows])
        else:
            self.fields = fields

    def _rows_up_to(
        self, fields: list[str], rows: list[tuple[int, list[str]]], cut: bool, last_step: int
    ) -> list[dict[str, str]]:
        """The rows whose step is ``<= last_step``; a cut last row whose step may be cut too is
        dropped."""
        if self.step_column not in fields:
            raise CsvLogError(
                f"cannot resume {self.path}: it has no {self.step_column!r} column; move the "
                "file away to start a new log"
            )
        column = fields.index(self.step_column)
        if cut and rows and len(rows[-1][1]) <= column + 1:
            rows = rows[:-1]
        kept = []
        for line, cells in rows:
            row = _as_row(self.path, fields, cells)
            if _step(self.path, line, self.step_column, row.get(self.step_column)) <= last_step:
                kept.append(row)
        return kept

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


def _read_lines(path: Path) -> tuple[list[str], list[tuple[int, list[str]]], bool]:
    """A CSV file's header, its non-blank rows as ``(line number, cells)`` and whether its last
    line was cut short (has no line end); no header when the header itself was cut short."""
    with path.open(newline="") as f:
        text = f.read()
    cut = bool(text) and not text.endswith(("\n", "\r"))
    reader = csv.reader(io.StringIO(text))
    lines = [(reader.line_num, cells) for cells in reader if cells]
    if not lines or (cut and len(lines) == 1):
        return [], [], False
    return lines[0][1], lines[1:], cut


def _as_row(path: Path, fields: list[str], cells: list[str]) -> dict[str, str]:
    """``cells`` keyed by ``fields`` (a short row's missing cells are left out)."""
    if len(cells) > len(fields):
        raise CsvLogError(
            f"cannot continue {path}: a row has {len(cells)} cells, more than the "
            f"{len(fields)} columns of its header; repair the file or move it away"
        )
    return dict(zip(fields, cells))


def _step(path: Path, line: int, column: str, cell: str | None) -> int:
    """The step that ``cell``, written as ``3`` or ``3.0``, holds."""
    try:
        return int(float(cell if cell is not None else ""))
    except (ValueError, OverflowError):  # OverflowError: inf
        raise CsvLogError(
            f"cannot resume {path}: line {line} has {column} {cell!r}, not a step number; "
            "repair that line or move the file away to start a new log"
        ) from None
