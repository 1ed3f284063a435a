"""The registry of supervised tasks: ``TASKS[name](data_seed) -> Task``."""

from __future__ import annotations

import difflib
from collections.abc import Callable

from rl_ig.supervised.curves import curves_task
from rl_ig.supervised.digits import digits_cnn_task, digits_mlp_task
from rl_ig.supervised.task import Task
from rl_ig.supervised.teacher import teacher_task

TASKS: dict[str, Callable[..., Task]] = {
    "curves": curves_task,
    "digits-mlp": digits_mlp_task,
    "digits-cnn": digits_cnn_task,
    "teacher": teacher_task,
}
"""Task factories by name; each takes ``data_seed`` (default 0) and returns a :class:`Task`."""


def check_task_name(name: str) -> str:
    """``name`` if it is a registered task.

    Raises:
        ValueError: one line with the closest names and the full list.
    """
    if name in TASKS:
        return name
    close = difflib.get_close_matches(name.lower(), list(TASKS), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ValueError(f"unknown task {name!r}{hint} (choose from: {', '.join(TASKS)})")


def make_task(name: str, data_seed: int = 0) -> Task:
    """The task ``name`` with its data drawn from ``data_seed``; see :func:`check_task_name`."""
    return TASKS[check_task_name(name)](data_seed)
