"""rl_ig.run.interrupt: the first Ctrl-C requests a stop, a second aborts, the old handler is
restored."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from types import FrameType

import pytest

from rl_ig.run.interrupt import announce_stop, stop_on_sigint


def _previous(signum: int, frame: FrameType | None) -> None:
    raise AssertionError("the handler installed before the block must not run inside it")


@pytest.fixture
def previous_handler() -> Iterator[None]:
    """``_previous`` as the SIGINT handler for the test; the real one back afterwards."""
    saved = signal.signal(signal.SIGINT, _previous)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, saved)


def test_the_first_sigint_requests_a_stop_and_the_old_handler_comes_back(
    previous_handler: None,
) -> None:
    requests: list[str] = []

    with stop_on_sigint(lambda: requests.append("stop")):
        signal.raise_signal(signal.SIGINT)
        assert requests == ["stop"]

    assert signal.getsignal(signal.SIGINT) is _previous


def test_a_second_sigint_raises_keyboard_interrupt_and_the_old_handler_comes_back(
    previous_handler: None,
) -> None:
    requests: list[str] = []

    with pytest.raises(KeyboardInterrupt), stop_on_sigint(lambda: requests.append("stop")):
        signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGINT)

    assert requests == ["stop"]
    assert signal.getsignal(signal.SIGINT) is _previous


def test_the_old_handler_comes_back_when_the_block_raises(previous_handler: None) -> None:
    with pytest.raises(RuntimeError, match="boom"), stop_on_sigint(lambda: None):
        assert signal.getsignal(signal.SIGINT) is not _previous
        raise RuntimeError("boom")

    assert signal.getsignal(signal.SIGINT) is _previous


def test_outside_the_main_thread_nothing_changes(previous_handler: None) -> None:
    seen: list[object] = []

    def body() -> None:
        with stop_on_sigint(lambda: None):
            seen.append(signal.getsignal(signal.SIGINT))

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()

    assert seen == [_previous]
    assert signal.getsignal(signal.SIGINT) is _previous


def test_announce_stop_names_the_unit_and_how_to_abort(capsys: pytest.CaptureFixture[str]) -> None:
    announce_stop("update")

    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "\nCtrl-C: stopping after the current update and saving a checkpoint "
        "(press Ctrl-C again to abort without saving)\n"
    )
