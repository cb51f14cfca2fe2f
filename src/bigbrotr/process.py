"""Process-level policy: exit codes, user mistakes, and what SIGINT/SIGTERM/SIGHUP do.

This module imports only the standard library, so the CLI can install the
signal handlers before it loads anything heavy: a signal that arrives while
the service is still being imported is then remembered, not fatal.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, NoReturn, Protocol

if TYPE_CHECKING:
    import asyncio

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "ShutdownSignals",
    "Stoppable",
    "UsageError",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """A mistake the user can fix; its message is one line saying what and where.

    The command line prints it after ``bigbrotr: error:`` and exits with
    ``EXIT_USAGE``, never with a traceback.
    """


class Stoppable(Protocol):
    """What a signal stops: a service, or a group of them."""

    def request_shutdown(self) -> None:
        """Stop after the current cycle(s)."""


class ShutdownSignals:
    """The one signal mechanism: SIGINT/SIGTERM stop gracefully (twice: at once); SIGHUP reloads.

    The handlers are Python-level and stay installed from before anything
    starts until the process ends. Python runs them in the main thread between
    two bytecodes, so they run even while a service blocks the event loop
    (``time.sleep``, a CPU loop) where a loop-dispatched handler would wait:
    the first signal is logged at once and hands the shutdown request to the
    loop; the second exits with 130 on the spot. A signal during start-up is
    remembered and honoured as soon as the service exists. SIGHUP calls the
    reload given to ``on_reload`` (the metrics server re-reads its web config
    on its own thread, so a blocked service loop does not delay it); with
    nothing to reload, it stops the process gracefully, as its default action
    would stop it.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.received = 0
        self._service: Stoppable | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reload: Callable[[], object] | None = None
        self._hangup_ignored = False

    def install(self) -> None:
        """Catch SIGINT, SIGTERM and SIGHUP from now on.

        A SIGHUP the process was started ignoring (``nohup``, a supervisor)
        stays ignored.
        """
        self._hangup_ignored = signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
        for sig in self.SIGNALS:
            if not (sig == signal.SIGHUP and self._hangup_ignored):
                signal.signal(sig, self._handle)

    def restore(self) -> None:
        """Give the signals back their default handling (for commands that do not run).

        A SIGHUP ignored from the start stays ignored.
        """
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if not self._hangup_ignored:
            signal.signal(signal.SIGHUP, signal.SIG_DFL)

    def on_reload(self, reload: Callable[[], object] | None) -> None:
        """Call ``reload`` at each SIGHUP (None: SIGHUP stops).

        It is called from the signal handler, in the main thread between two
        bytecodes: it must only hand the work to another thread or loop.
        """
        self._reload = reload

    def attach(self, service: Stoppable) -> None:
        """Send the shutdown request to ``service`` (or a group), on the running loop."""
        import asyncio

        self._service, self._loop = service, asyncio.get_running_loop()
        if self.received:
            service.request_shutdown()

    def detach(self) -> None:
        """Stop sending requests to the service (before its loop closes)."""
        self._service = self._loop = self._reload = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        reload = self._reload
        if signum == signal.SIGHUP and reload is not None:
            reload()  # thread-safe by contract: it must not wait for the service's loop
            return
        self.received += 1
        name = signal.Signals(signum).name
        if self.received > 1:
            self._log("warning", "second signal, exiting now", name).join(0.5)
            self._exit_now()
        if self._service is None or self._loop is None:
            return  # still starting: attach() honours it
        self._log("info", "shutdown requested, stopping after the current cycle", name)
        self._loop.call_soon_threadsafe(self._service.request_shutdown)

    @staticmethod
    def _log(level: str, event: str, signal_name: str) -> threading.Thread:
        """Log from a thread of its own.

        The handler runs in the main thread, which may be in the middle of
        writing a log line itself; logging's lock is re-entrant, so writing
        from here would splice the two. Another thread waits for the lock.
        """
        from bigbrotr.core.logger import get_logger

        def log() -> None:
            getattr(get_logger(__name__), level)(event, signal=signal_name)

        thread = threading.Thread(target=log, name="bigbrotr-signal-log", daemon=True)
        thread.start()
        return thread

    @staticmethod
    def _exit_now() -> NoReturn:
        for handler in logging.getLogger().handlers:
            handler.flush()
        sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED)
