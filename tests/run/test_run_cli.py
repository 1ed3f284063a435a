"""rl_ig.run.cli: one-line errors and exit codes, --steps, the resume command line."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pytest

from rl_ig.run.cli import (
    EXIT_ABORTED,
    EXIT_USAGE,
    OneLineParser,
    one_line,
    parse_steps,
    report_early_interrupt,
    report_usage_error,
    resume_command,
)


def test_exit_codes_are_argparse_s_and_the_shell_s() -> None:
    assert (EXIT_USAGE, EXIT_ABORTED) == (2, 130)


def test_one_line_folds_white_space_and_names_the_type_of_an_empty_message() -> None:
    assert one_line(ValueError("bad  value\n  in --hp\tlr")) == "bad value in --hp lr"
    assert one_line(KeyError()) == "KeyError"


def test_report_usage_error_prints_one_line_on_stderr_and_returns_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = report_usage_error(OSError("cannot write\nto logdir x"))

    captured = capsys.readouterr()
    assert code == 2
    assert (captured.out, captured.err) == ("", "error: cannot write to logdir x\n")


def test_report_early_interrupt_says_nothing_was_saved_and_returns_130(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = report_early_interrupt()

    captured = capsys.readouterr()
    assert code == 130
    assert captured.err == "interrupted before training started; nothing was saved\n"


def test_one_line_parser_usage_errors_are_one_line_with_exit_code_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    parser = OneLineParser()
    parser.add_argument("--task", required=True)

    with pytest.raises(SystemExit) as info:
        parser.parse_args([])

    assert info.value.code == 2
    assert capsys.readouterr().err == "error: the following arguments are required: --task\n"


def _usage_error(parser: OneLineParser, argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as info:
        parser.parse_args(argv)
    assert info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    return captured.err


def test_one_line_parser_adds_its_hint_after_every_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    parser = OneLineParser(hint="see scripts/train.py --help")
    parser.add_argument("--seed", type=int, default=0)

    assert _usage_error(parser, ["--seed", "x"], capsys) == (
        "error: argument --seed: invalid int value: 'x' (see scripts/train.py --help)\n"
    )
    assert _usage_error(parser, ["--frobnicate"], capsys) == (
        "error: unrecognized arguments: --frobnicate (see scripts/train.py --help)\n"
    )


def test_one_line_parser_suggests_the_known_flags_close_to_unknown_ones(
    capsys: pytest.CaptureFixture[str],
) -> None:
    parser = OneLineParser()
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-every", type=int, default=0)

    assert _usage_error(parser, ["--seeds", "3", "--eval-evry=5", "--zzz"], capsys) == (
        "error: unrecognized arguments: --seeds 3 --eval-evry=5 --zzz; did you mean --seed, "
        "--eval-every?\n"
    )


@pytest.mark.parametrize(
    ("text", "steps"), [("2000", 2000), ("2e3", 2000), (" 7 ", 7), ("1.0", 1), ("1e16", 10**16)]
)
def test_parse_steps_reads_digits_and_whole_floats(text: str, steps: int) -> None:
    assert parse_steps(text, "2000 or 2e3") == steps


def test_parse_steps_keeps_large_digit_strings_exact() -> None:
    assert parse_steps("9007199254740993", "x") == 9007199254740993  # 2**53 + 1


@pytest.mark.parametrize("text", ["0", "-5", "1.5", "abc", "", "nan", "inf"])
def test_parse_steps_refuses_what_is_not_a_whole_number_of_at_least_1(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_steps(text, "1000000 or 1e6")
    assert str(info.value) == (
        f"--steps must be a whole number >= 1 such as 1000000 or 1e6, got {text!r}"
    )


def test_resume_command_replaces_any_resume_flag_by_the_checkpoint() -> None:
    argv = ["--task", "teacher", "--resume", "old.pt", "--lr", "1e-3", "--resume=older.pt"]

    command = resume_command("scripts/train_supervised.py", argv, Path("runs/a b/checkpoint.pt"))

    assert shlex.split(command) == [
        sys.executable,
        "scripts/train_supervised.py",
        *("--task", "teacher", "--lr", "1e-3"),
        *("--resume", "runs/a b/checkpoint.pt"),
    ]
