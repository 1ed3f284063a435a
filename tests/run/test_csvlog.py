"""rl_ig.run.csvlog: rows appended one at a time, header extension, the two ways to resume,
last lines cut short by a crash, and the files that cannot be continued."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest

from rl_ig.run.csvlog import CsvLog, CsvLogError


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_rows_are_on_disk_as_soon_as_they_are_written(tmp_path: Path) -> None:
    path = tmp_path / "progress.csv"
    log = CsvLog(path)

    log.write({"step": 1, "train/loss": 0.5})
    assert _lines(path) == ["step,train/loss", "1,0.5"]
    log.write({"step": 2, "train/loss": 0.25})
    assert _lines(path) == ["step,train/loss", "1,0.5", "2,0.25"]


def test_missing_keys_are_blank_and_new_keys_extend_the_header(tmp_path: Path) -> None:
    path = tmp_path / "progress.csv"
    log = CsvLog(path)
    log.write({"step": 1, "a": 10})
    log.write({"step": 2, "a": 20, "rollout/ep_rew_mean": -3.5})
    log.write({"step": 3})

    assert log.fields == ["step", "a", "rollout/ep_rew_mean"]
    assert _lines(path) == ["step,a,rollout/ep_rew_mean", "1,10,", "2,20,-3.5", "3,,"]
    assert [p.name for p in tmp_path.iterdir()] == ["progress.csv"]  # no temporary left


def test_a_new_log_replaces_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "progress.csv"
    path.write_text("old,header\n1,2\n")

    log = CsvLog(path)
    assert not path.exists()
    log.write({"step": 1})
    assert _lines(path) == ["step", "1"]


def test_append_keeps_every_row_and_the_header(tmp_path: Path) -> None:
    path = tmp_path / "progress.csv"
    first = CsvLog(path)
    for step in (1, 2, 3):
        first.write({"time/total_timesteps": step, "train/kl": step / 10})

    resumed = CsvLog(path, append=True)
    assert resumed.fields == ["time/total_timesteps", "train/kl"]
    resumed.write({"time/total_timesteps": 2, "train/kl": 0.5})

    assert _lines(path) == [
        "time/total_timesteps,train/kl",
        "1,0.1",
        "2,0.2",
        "3,0.3",
        "2,0.5",
    ]


def test_append_to_a_missing_file_starts_one(tmp_path: Path) -> None:
    path = tmp_path / "evaluations.csv"

    CsvLog(path, append=True).write({"timesteps": 256, "mean_reward": -1.0})

    assert _lines(path) == ["timesteps,mean_reward", "256,-1.0"]


def test_keep_until_rewrites_the_file_at_once_without_the_later_rows(tmp_path: Path) -> None:
    """The rows past the checkpoint are gone as soon as the log is opened, before any row of
    the resumed run is written (a run that stops at once leaves no stale rows)."""
    path = tmp_path / "evaluations.csv"
    path.write_text("step,eval/test_loss\n0,2.5\n4,1.5\n8,0.5\n")

    resumed = CsvLog(path, keep_until=4)

    assert resumed.fields == ["step", "eval/test_loss"]
    assert _rows(path) == [
        {"step": "0", "eval/test_loss": "2.5"},
        {"step": "4", "eval/test_loss": "1.5"},
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["evaluations.csv"]


def test_keep_until_reads_steps_written_as_floats(tmp_path: Path) -> None:
    path = tmp_path / "progress.csv"
    path.write_text("step,a\n1.0,1\n2.0,2\n3.0,3\n")

    CsvLog(path, keep_until=2)

    assert _lines(path) == ["step,a", "1.0,1", "2.0,2"]


def test_keep_until_drops_a_last_line_cut_short_after_the_checkpoint(tmp_path: Path) -> None:
    """A crash mid-row leaves a last line without its end and some of its cells: it is read as
    a row with the cells it has, dropped when its step is past the checkpoint, and the file is
    whole again before the next row is appended."""
    path = tmp_path / "progress.csv"
    path.write_text("step,a,b\r\n1,10,100\r\n2,20,200\r\n3,3", newline="")

    resumed = CsvLog(path, keep_until=2)
    resumed.write({"step": 3, "a": 30, "b": 300})

    assert _rows(path) == [
        {"step": "1", "a": "10", "b": "100"},
        {"step": "2", "a": "20", "b": "200"},
        {"step": "3", "a": "30", "b": "300"},
    ]


def test_keep_until_keeps_a_cut_short_row_up_to_the_checkpoint_with_blank_cells(
    tmp_path: Path,
) -> None:
    path = tmp_path / "progress.csv"
    path.write_text("step,a,b\r\n1,10,100\r\n2,2", newline="")

    CsvLog(path, keep_until=2).write({"step": 3, "a": 30, "b": 300})

    assert _lines(path) == ["step,a,b", "1,10,100", "2,2,", "3,30,300"]


def test_keep_until_of_a_missing_file_starts_one(tmp_path: Path) -> None:
    path = tmp_path / "progress.csv"

    CsvLog(path, keep_until=5).write({"step": 6})

    assert _lines(path) == ["step", "6"]


def test_append_and_keep_until_together_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="^pass append=True or keep_until, not both$"):
        CsvLog(tmp_path / "progress.csv", append=True, keep_until=3)


def test_keep_until_compares_the_step_column_it_is_given(tmp_path: Path) -> None:
    path = tmp_path / "progress.csv"
    path.write_text("train/kl,time/total_timesteps\r\n0.5,256.0\r\n0.1,512.0\r\n0.2,768.0\r\n")

    CsvLog(path, keep_until=512, step_column="time/total_timesteps")

    assert _lines(path) == ["train/kl,time/total_timesteps", "0.5,256.0", "0.1,512.0"]


def test_keep_until_drops_a_cut_last_row_whose_step_may_be_cut_too(tmp_path: Path) -> None:
    """``1`` may be the start of ``1024.0``: a step that ends the cut line is not trusted, even
    when it reads as a step before the checkpoint."""
    path = tmp_path / "progress.csv"
    path.write_text("step,a\r\n256.0,1\r\n512.0,2\r\n768.0,3\r\n1", newline="")

    resumed = CsvLog(path, keep_until=512)
    resumed.write({"step": 768, "a": 4})

    assert _lines(path) == ["step,a", "256.0,1", "512.0,2", "768,4"]


def test_append_completes_a_cut_last_line_instead_of_gluing_the_next_row_to_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "progress.csv"
    path.write_text("step,a,b\r\n1,10,100\r\n2,20", newline="")

    CsvLog(path, append=True).write({"step": 3, "a": 30, "b": 300})

    assert _lines(path) == ["step,a,b", "1,10,100", "2,20,", "3,30,300"]
    assert [p.name for p in tmp_path.iterdir()] == ["progress.csv"]


@pytest.mark.parametrize("resume", [{"append": True}, {"keep_until": 5}])
def test_a_file_whose_header_was_cut_short_is_started_afresh(
    tmp_path: Path, resume: dict[str, Any]
) -> None:
    path = tmp_path / "progress.csv"
    path.write_text("step,train/lo", newline="")

    CsvLog(path, **resume).write({"step": 6, "train/loss": 0.5})

    assert _lines(path) == ["step,train/loss", "6,0.5"]


def test_keep_until_refuses_a_file_without_the_step_column(tmp_path: Path) -> None:
    path = tmp_path / "evaluations.csv"
    path.write_text("step,mean_reward\r\n256,-1.0\r\n")

    with pytest.raises(CsvLogError) as info:
        CsvLog(path, keep_until=256, step_column="timesteps")

    assert str(info.value) == (
        f"cannot resume {path}: it has no 'timesteps' column; move the file away to start a new log"
    )
    assert _lines(path) == ["step,mean_reward", "256,-1.0"]  # left as it was


@pytest.mark.parametrize("cell", ["", "abc", "inf"])
def test_keep_until_refuses_a_step_that_is_not_a_number(tmp_path: Path, cell: str) -> None:
    path = tmp_path / "progress.csv"
    path.write_text(f"step,a\r\n1,10\r\n{cell},20\r\n3,30\r\n")

    with pytest.raises(CsvLogError) as info:
        CsvLog(path, keep_until=2)

    assert str(info.value) == (
        f"cannot resume {path}: line 3 has step {cell!r}, not a step number; repair that line "
        "or move the file away to start a new log"
    )
    assert _lines(path) == ["step,a", "1,10", f"{cell},20", "3,30"]


def test_a_row_longer_than_the_header_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "progress.csv"
    path.write_text("step,a\r\n1,10,99\r\n2,2", newline="")

    with pytest.raises(CsvLogError, match="a row has 3 cells, more than the 2 columns of its"):
        CsvLog(path, append=True)
