"""Process-level policy: exit codes, and what SIGINT/SIGTERM do.

This module imports only the standard library, so the CLI can install the
signal handlers before it loads anything heavy: a signal that arrives while
the service is still being imported is then remembered, not fatal.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from types import FrameType
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from bigbrotr.core.base_service import BaseService, BaseServiceConfig

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "ShutdownSignals"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class ShutdownSignals:
    """SIGINT/SIGTERM policy: the first asks for a graceful stop, the second exits at once.

    ``install`` catches signals from before anything starts until the process
    ends; while the loop runs they go through it. A signal during start-up is
    remembered and honoured as soon as the service exists. The second signal
    exits with 130 on the spot: a cycle blocked in a thread (which asyncio
    would wait for) cannot hold the process.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received = 0
        self._service: BaseService[BaseServiceConfig] | None = None

    def install(self) -> None:
        """Catch signals synchronously (outside the loop)."""
        for sig in self.SIGNALS:
            signal.signal(sig, self._outside_loop)

    def restore(self) -> None:
        """Give the signals back their default handling (for commands that do not run)."""
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    def attach(self, service: BaseService[BaseServiceConfig]) -> None:
        """Route signals through the running loop to ``service``."""
        import asyncio

        self._service = service
        loop = asyncio.get_running_loop()
        for sig in self.SIGNALS:
            loop.add_signal_handler(sig, self._on_loop, sig)
        if self.received:
            service.request_shutdown()

    def detach(self) -> None:
        """Take the handlers off the loop (before it closes), back to ``install``'s."""
        import asyncio

        loop = asyncio.get_running_loop()
        for sig in self.SIGNALS:  # one at a time: the default disposition lasts one call
            loop.remove_signal_handler(sig)
            signal.signal(sig, self._outside_loop)

    def _outside_loop(self, signum: int, frame: FrameType | None) -> None:
        self.received += 1
        if self.received > 1:
            self._exit_now()

    def _on_loop(self, sig: signal.Signals) -> None:
        from bigbrotr.core.logger import get_logger

        log = get_logger(__name__)
        self.received += 1
        if self.received > 1:
            log.warning("second signal, exiting now", signal=sig.name)
            self._exit_now()
        log.info("shutdown requested, stopping after the current cycle", signal=sig.name)
        assert self._service is not None
        self._service.request_shutdown()

    @staticmethod
    def _exit_now() -> NoReturn:
        for handler in logging.getLogger().handlers:
            handler.flush()
        sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED)
