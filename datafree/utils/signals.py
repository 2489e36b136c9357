"""SIGTERM / SIGINT as a request to stop at the next step boundary, never in the middle of one.

Pre-emptible machines send SIGTERM and give the process some seconds. The handler
only records the signal; the training loop looks at :attr:`StopRequest.signum`
after each step (a host-side attribute: no device sync), saves its full state and
raises :class:`Interrupted`. A second Ctrl-C while the first is being handled
stops at once, for a user who does not want to wait.

Under torchrun the CLI also defers SIGTERM outside the loops (:func:`defer_sigterm`):
torchrun sends it to every other rank when one fails, and a rank must then live long
enough to report why it stops; a SIGTERM that arrives before a loop starts stops that
loop at its first step boundary.
"""
from __future__ import annotations

import contextlib
import signal
import threading

from datafree.errors import DatafreeError


class Interrupted(DatafreeError):
    """The run stopped on a signal after saving its state; ``exit_code`` is 128 + the signal number."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + int(signum)


def interrupted(signum: int, where: str, path) -> Interrupted:
    """The error a loop raises after saving its state on a signal; ``where`` says how far it got."""
    saved = f"full state saved to {path}" if path else "no state saved (checkpoints are off)"
    return Interrupted(f"stopped by {signal.Signals(signum).name} after {where}: {saved}; to continue, run the same "
                       "command with resume=RUN_DIR (the run's folder), or resume=true where hydra.run.dir is fixed.",
                       signum)


class StopRequest:
    """While entered, SIGTERM and SIGINT set :attr:`signum` instead of ending the process.

    Entering it outside the main thread (where Python cannot install handlers)
    does nothing: the loop then simply never sees a request.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)
    deferred: int | None = None  # a SIGTERM received outside every loop while deferred (defer_sigterm)

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum, frame) -> None:
        if self.signum == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C: the user does not want to wait for the save
        self.signum = signum

    def __enter__(self) -> "StopRequest":
        if self.signum is None and StopRequest.deferred is not None:
            self.signum, StopRequest.deferred = StopRequest.deferred, None
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


@contextlib.contextmanager
def defer_sigterm():
    """While inside, a SIGTERM outside the loops is only recorded (for the next loop to honour)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def record(signum, frame) -> None:
        StopRequest.deferred = signum

    previous = signal.signal(signal.SIGTERM, record)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        StopRequest.deferred = None
