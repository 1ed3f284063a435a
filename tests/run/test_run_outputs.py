"""rl_ig.run.outputs: the files of a run, the logdir check and atomic JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rl_ig.run.outputs import RunPaths, prepare_logdir, write_json


def test_run_paths_name_every_output_inside_the_logdir(tmp_path: Path) -> None:
    paths = RunPaths(tmp_path)

    assert paths.as_dict() == {
        "logdir": str(tmp_path),
        "progress": str(tmp_path / "progress.csv"),
        "evaluations": str(tmp_path / "evaluations.csv"),
        "checkpoint": str(tmp_path / "checkpoint.pt"),
        "final_model": str(tmp_path / "final.pt"),
        "summary": str(tmp_path / "run_summary.json"),
    }


def test_prepare_logdir_creates_parents_and_leaves_no_probe(tmp_path: Path) -> None:
    logdir = tmp_path / "a" / "b"

    assert prepare_logdir(str(logdir)) == logdir
    assert logdir.is_dir()
    assert list(logdir.iterdir()) == []


def test_prepare_logdir_accepts_an_existing_directory_and_keeps_its_files(tmp_path: Path) -> None:
    (tmp_path / "progress.csv").write_text("step\n1\n")

    prepare_logdir(tmp_path)

    assert (tmp_path / "progress.csv").read_text() == "step\n1\n"


def test_a_file_in_the_way_of_the_logdir_is_a_one_line_error(tmp_path: Path) -> None:
    taken = tmp_path / "taken"
    taken.write_text("")

    with pytest.raises(OSError) as info:
        prepare_logdir(taken)
    assert str(info.value) == (
        f"cannot write to logdir {taken}: File exists; pass a writable --logdir"
    )
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_a_logdir_below_a_file_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    logdir = tmp_path / "file" / "run"

    with pytest.raises(OSError) as info:
        prepare_logdir(logdir)
    assert str(info.value) == (
        f"cannot write to logdir {logdir}: Not a directory; pass a writable --logdir"
    )


def test_write_json_writes_indented_json_with_a_final_newline(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "run_summary.json"

    write_json(path, {"status": "completed", "step": 3})

    assert path.read_text() == '{\n  "status": "completed",\n  "step": 3\n}\n'
    assert sorted(p.name for p in path.parent.iterdir()) == ["run_summary.json"]


def test_write_json_that_fails_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "run_summary.json"
    write_json(path, {"status": "completed"})

    with pytest.raises(TypeError):
        write_json(path, {"status": object()})

    assert json.loads(path.read_text()) == {"status": "completed"}
    assert [p.name for p in tmp_path.iterdir()] == ["run_summary.json"]
