"""The conventions of the training scripts: every bad input is one line ``error: ...`` on stderr
with exit code 2; a Ctrl-C before training starts exits 130; an interrupted run prints the
command that resumes it."""

from __future__ import annotations

import argparse
import difflib
import math
import shlex
import sys
from pathlib import Path
from typing import Any, NoReturn

EXIT_USAGE = 2
"""Exit code of a bad input (argparse's)."""
EXIT_ABORTED = 130
"""Exit code of a run stopped by Ctrl-C without saving (128 + SIGINT, the shell's)."""


def one_line(exc: BaseException) -> str:
    """An exception's message with its white space folded onto one line (its type's name when
    the message is empty)."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def report_usage_error(exc: BaseException) -> int:
    """Print ``error: <the message on one line>`` on stderr.

    Returns:
        :data:`EXIT_USAGE`, the exit code to return.
    """
    print(f"error: {one_line(exc)}", file=sys.stderr)
    return EXIT_USAGE


def report_early_interrupt() -> int:
    """Tell the user, on stderr, that Ctrl-C came before training started.

    Returns:
        :data:`EXIT_ABORTED`, the exit code to return.
    """
    print("interrupted before training started; nothing was saved", file=sys.stderr)
    return EXIT_ABORTED


_UNRECOGNIZED = "unrecognized arguments: "
"""How argparse starts the message for arguments it does not know."""


class OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line ``error: ...`` with exit code 2.

    An unknown flag close to a known one gets ``; did you mean --seed?``.

    Args:
        *args: those of :class:`argparse.ArgumentParser`.
        hint: added in parentheses after every usage error when given, e.g.
            ``"see scripts/train.py --help"``.
        **kwargs: those of :class:`argparse.ArgumentParser`.
    """

    def __init__(self, *args: Any, hint: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hint = hint

    def error(self, message: str) -> NoReturn:
        """Print ``message`` on one line and exit with :data:`EXIT_USAGE`."""
        text = " ".join(message.split()) + self._did_you_mean(message)
        if self.hint:
            text += f" ({self.hint})"
        print(f"error: {text}", file=sys.stderr)
        sys.exit(EXIT_USAGE)

    def _did_you_mean(self, message: str) -> str:
        """``; did you mean --x?`` for the unknown flags of ``message`` close to known ones."""
        if not message.startswith(_UNRECOGNIZED):
            return ""
        known = [flag for flag in self._option_string_actions if flag.startswith("--")]
        close: list[str] = []
        for arg in message[len(_UNRECOGNIZED) :].split():
            flag = arg.split("=", 1)[0]
            if flag.startswith("--"):
                close += difflib.get_close_matches(flag, known, n=1)
        return f"; did you mean {', '.join(dict.fromkeys(close))}?" if close else ""


def parse_steps(text: str, examples: str) -> int:
    """``--steps`` as an int >= 1, written as digits (``"2000"``) or a float (``"2e3"``).

    Args:
        text: the flag's value as typed.
        examples: two valid values for the error message, e.g. ``"2000 or 2e3"``.

    Raises:
        ValueError: one line naming the flag, what it takes and the value given.
    """
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value >= 1 and value.is_integer()):
        raise ValueError(f"--steps must be a whole number >= 1 such as {examples}, got {text!r}")
    return int(text) if text.strip().isdigit() else int(value)


def resume_command(script: str, argv: list[str], checkpoint: Path) -> str:
    """The command line ``python script argv`` with ``--resume`` pointing at ``checkpoint``.

    Args:
        script: the script's path as the user would type it, e.g. ``scripts/train.py``.
        argv: the arguments the run was started with; any ``--resume X`` or ``--resume=X``
            among them is dropped.
        checkpoint: the checkpoint to resume from.

    Returns:
        A shell-quoted command line.
    """
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--resume":
            skip = True
        elif not arg.startswith("--resume="):
            kept.append(arg)
    return shlex.join([sys.executable, script, *kept, "--resume", str(checkpoint)])
