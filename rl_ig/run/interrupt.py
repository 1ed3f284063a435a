"""Ctrl-C during training: the first one asks the run to stop after the current step and save a
checkpoint, a second one aborts at once without saving."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType


@contextlib.contextmanager
def stop_on_sigint(request_stop: Callable[[], None]) -> Iterator[None]:
    """Turn the first SIGINT into ``request_stop()``; a second one raises KeyboardInterrupt.

    The SIGINT handler that was installed before is restored on exit, however the block ends.
    Outside the main thread (where handlers cannot be installed) nothing changes.

    Args:
        request_stop: called (from the signal handler, in the main thread) on the first SIGINT;
            it should only set a flag that the training loop reads between steps.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        request_stop()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def announce_stop(unit: str) -> None:
    """Tell the user, on stderr, what the first Ctrl-C does.

    Args:
        unit: what the run stops after, ``"update"`` or ``"step"``.
    """
    print(
        f"\nCtrl-C: stopping after the current {unit} and saving a checkpoint "
        "(press Ctrl-C again to abort without saving)",
        file=sys.stderr,
        flush=True,
    )
