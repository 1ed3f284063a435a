"""What every training run does besides training, shared by ``agents.training`` (RL) and
``rl_ig.supervised`` (supervised), and by their command lines.

- :mod:`rl_ig.run.outputs`: the files of a run (:class:`RunPaths`), the check that its logdir is
  writable (:func:`prepare_logdir`) and atomic JSON (:func:`write_json`).
- :mod:`rl_ig.run.csvlog`: :class:`CsvLog`, rows appended to ``progress.csv`` and
  ``evaluations.csv`` one at a time (:class:`CsvLogError`: an existing log that cannot be
  continued).
- :mod:`rl_ig.run.interrupt`: Ctrl-C as "stop after this step and save" (:func:`stop_on_sigint`).
- :mod:`rl_ig.run.cli`: the scripts' conventions: one-line ``error: ...`` messages with exit code
  2, ``--steps`` parsing, the ``--resume`` command line.
"""

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
from rl_ig.run.csvlog import CsvLog, CsvLogError
from rl_ig.run.interrupt import announce_stop, stop_on_sigint
from rl_ig.run.outputs import RunPaths, prepare_logdir, writable_dir, write_json

__all__ = [
    "EXIT_ABORTED",
    "EXIT_USAGE",
    "CsvLog",
    "CsvLogError",
    "OneLineParser",
    "RunPaths",
    "announce_stop",
    "one_line",
    "parse_steps",
    "prepare_logdir",
    "writable_dir",
    "report_early_interrupt",
    "report_usage_error",
    "resume_command",
    "stop_on_sigint",
    "write_json",
]
