"""Stopping a command cleanly on SIGTERM (a batch scheduler's time limit, ``kill``) and SIGINT (Ctrl-C).

Inside :func:`stop_on_signals` either signal raises :class:`Stopped` (a ``KeyboardInterrupt``, so
code that handles Ctrl-C handles both) in the main thread. Code whose files must not be left half
written (a trajectory frame, the move of a finished file over its target) runs under
:func:`deferred`: a signal that arrives there is held and raised when the section ends, or at the
next :func:`interruptible` section inside it (the MD loop). After the first signal further ones
are ignored, so the clean-up they started is not itself interrupted. The commands turn ``Stopped``
into a one-line message and the conventional exit status, 128 + the signal's number (143 for
SIGTERM, 130 for SIGINT).

Outside :func:`stop_on_signals` nothing changes: SIGINT is Python's ``KeyboardInterrupt`` and
SIGTERM ends the process.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator, Optional

__all__ = ["Stopped", "stop_on_signals", "deferred", "interruptible", "exit_status"]

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Stopped(KeyboardInterrupt):
    """The process received ``signum``; ``str()`` says where it stopped and what it left."""

    def __init__(self, signum: int, message: Optional[str] = None):
        self.signum = int(signum)
        super().__init__(message or f"stopped by {self.name}")

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    def with_message(self, message: str) -> Stopped:
        return Stopped(self.signum, message)


def exit_status(exc: BaseException) -> int:
    """The exit status of a command stopped by ``exc`` (a plain Ctrl-C: 130)."""
    return exc.exit_code if isinstance(exc, Stopped) else 128 + signal.SIGINT


class _State:
    installed = 0
    held = 0  # depth of deferred() sections (interruptible() sets it to 0 for its duration)
    pending: Optional[int] = None  # the first signal received
    raised = False  # it has been raised as Stopped


def _handler(signum, frame) -> None:
    if _State.raised or (_State.pending is not None and _State.held):
        return  # already stopping, or held until the deferred section ends
    _State.pending = signum
    if _State.held == 0:
        if _in_finaliser(frame):
            # Raised in a __del__ or a weakref finaliser (the garbage collector runs them at any
            # line), it would be printed as "Exception ignored" and lost, and the command would
            # finish as if never signalled: deliver the signal again once the finaliser is done.
            _deliver_again(signum)
            return
        _State.raised = True
        raise Stopped(signum)


def _in_finaliser(frame) -> bool:
    while frame is not None:
        code = frame.f_code
        if code.co_name == "__del__" or (code.co_name == "__call__" and code.co_filename.endswith("weakref.py")):
            return True
        frame = frame.f_back
    return False


def _deliver_again(signum: int) -> None:
    main = threading.main_thread().ident

    def again() -> None:
        if _State.installed and _State.pending == signum and not _State.raised:
            signal.pthread_kill(main, signum)

    timer = threading.Timer(0.01, again)
    timer.daemon = True
    timer.start()


def _raise_pending() -> None:
    if _State.pending is not None and not _State.raised:
        _State.raised = True
        raise Stopped(_State.pending)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGTERM and SIGINT raise :class:`Stopped` inside the block (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread() or _State.installed:
        yield
        return
    previous = {s: signal.signal(s, _handler) for s in SIGNALS}
    _State.installed, _State.held, _State.pending, _State.raised = 1, 0, None, False
    try:
        yield
        _raise_pending()  # a signal not yet raised (held, or caught in a finaliser) still stops the command
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _State.installed, _State.held, _State.pending, _State.raised = 0, 0, None, False


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """A section a signal does not interrupt: it is raised when the section ends (unless an error is
    already on its way out)."""
    _State.held += 1
    try:
        yield
    except BaseException:
        _State.held -= 1
        raise
    _State.held -= 1
    if _State.held == 0:
        _raise_pending()


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Inside a :func:`deferred` section: a part a signal may interrupt at once (a held one is raised
    on entry)."""
    held, _State.held = _State.held, 0
    try:
        _raise_pending()
        yield
    finally:
        _State.held = held
