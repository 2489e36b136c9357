"""SIGTERM / SIGINT as a request to stop at the next step boundary, never in the middle of one.

Pre-emptible machines send SIGTERM and give the process some seconds. The handler
only records the signal; the training loop looks at :attr:`StopRequest.signum`
after each step (a host-side attribute: no device sync), saves its full state and
raises :class:`Interrupted`. A second Ctrl-C while the first is being handled
stops at once, for a user who does not want to wait.

Outside the loops the CLI handles both signals for the whole command (:class:`CommandSignals`):
before the job starts it is not started, while it runs it stops at once, after it has
finished the signal is only named, since the outputs are complete. Under torchrun SIGTERM
is deferred outside the loops instead: torchrun sends it to every other rank when one fails,
and a rank must then live long enough to report why it stops; a SIGTERM that arrives
before a loop starts stops that loop at its first step boundary.
"""
from __future__ import annotations

import os
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
    deferred: int | None = None  # a SIGTERM received outside every loop under torchrun (CommandSignals)

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


class Signalled(BaseException):
    """SIGTERM/SIGINT while a command's work runs outside every loop: it unwinds at once, as Ctrl-C's
    KeyboardInterrupt does (a BaseException, so that no ``except Exception`` takes it for a failure)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)


class CommandSignals:
    """SIGTERM and SIGINT over a whole command, outside the loops' own handling (:class:`StopRequest`).

    Before the job starts a signal is recorded and :meth:`start` then refuses to start it; while
    the job runs it raises :class:`Signalled` at once, or under torchrun (``defer``) a SIGTERM is
    recorded for the next loop to honour, so that a rank lives to report why it stops; once the
    job has finished (:meth:`finish`) the outputs are complete: the signal is named in one line and
    the command ends as it would have. ``keep`` leaves that last handler in place after the command,
    for the process's own shutdown (the console script); ``report`` is false on torchrun's other ranks.
    """

    def __init__(self, defer: bool = False, keep: bool = False, report: bool = True):
        self.defer, self.keep, self.report = defer, keep, report
        self.phase = "before"  # before | job | done | failed
        self.received: int | None = None
        self._previous: dict = {}

    def _handle(self, signum, frame) -> None:
        if self.phase == "done":
            if self.report and self.received is None:
                # os.write: the main thread may be in the middle of a print to stderr
                os.write(2, f"datafree: {signal.Signals(signum).name} arrived after the run had finished: nothing was "
                            "interrupted, its outputs are complete.\n".encode())
            self.received = signum
        elif self.defer and signum == signal.SIGTERM:
            StopRequest.deferred = signum
        elif self.phase == "job":
            raise Signalled(signum)
        else:
            self.received = signum

    def __enter__(self) -> "CommandSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in StopRequest.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if not (self.keep and self.phase == "done"):
            for sig, handler in self._previous.items():
                signal.signal(sig, handler)
        StopRequest.deferred = None

    def start(self) -> None:
        """The job starts now, unless a signal came first (:class:`Signalled`)."""
        self.phase = "job"
        if self.received is not None:
            raise Signalled(self.received)

    def finish(self, complete: bool) -> None:
        """The job has returned (``complete``) or failed; a SIGTERM deferred for a loop that never came counts now."""
        self.phase = "done" if complete else "failed"
        if complete and StopRequest.deferred is not None:
            self._handle(StopRequest.deferred, None)
            StopRequest.deferred = None


def stopped_outside_loops(signum: int, started: bool, saved: bool) -> Interrupted:
    """The error for a signal outside the loops: before the job started, or while it ran (``saved``: states exist)."""
    name = signal.Signals(signum).name
    if not started:
        return Interrupted(f"stopped by {name} before the run started: nothing was written.", signum)
    then = ("the full states saved so far are kept: to continue, run the same command with resume=RUN_DIR (the run's "
            "folder)." if saved else "run the same command again.")
    return Interrupted(f"stopped by {name} before the run finished: {then}", signum)
