"""A watchdog for an event loop: how late it runs, and where it is stuck when blocked.

Code on the loop cannot see that the loop is blocked: it is the thing not
running. ``LoopWatchdog`` watches from its own thread. Every ``interval`` it
hands the loop a callback and measures how long the loop takes to run it (the
lag, reported to ``observe``). When a callback waits longer than
``threshold``, it logs one WARNING for that episode with the loop thread's
stack, so the operator sees the line that blocks; when the loop runs again it
logs how long the block lasted.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import traceback
from collections.abc import Callable

from bigbrotr.core.logger import get_logger

__all__ = ["LoopWatchdog"]

_STACK_FRAMES = 12


class LoopWatchdog:
    """Measures an event loop's lag from another thread and reports blocks.

    Args:
        loop: The loop to watch; start the watchdog from that loop's thread.
        threshold: Seconds of block after which one WARNING is logged; 0 to
            only measure.
        observe: Called with each lag, in seconds (from the watchdog thread).
        interval: Seconds between two probes.
        service: Name added to the log lines.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        threshold: float,
        observe: Callable[[float], None],
        interval: float = 0.1,
        service: str = "",
    ) -> None:
        self._loop = loop
        self._threshold = threshold
        self._observe = observe
        self._interval = interval
        self._loop_thread = threading.get_ident()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._pending_since: float | None = None
        self._last_lag = 0.0
        self._log = get_logger(__name__, service=service) if service else get_logger(__name__)

    def start(self) -> None:
        """Start watching (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._watch, name="bigbrotr-watchdog", daemon=True
            )
            self._thread.start()

    def blocked_for(self) -> float:
        """How long the probe now waiting for the loop has waited (0 when none waits)."""
        since = self._pending_since
        return 0.0 if since is None else max(0.0, time.monotonic() - since)

    def lag(self) -> float:
        """The latest lag: the last probe's, or longer while a probe still waits."""
        return max(self._last_lag, self.blocked_for())

    def stop(self) -> None:
        """Stop watching; the thread ends within one probe."""
        self._stopped.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(self._interval + 1.0)

    def _watch(self) -> None:
        while not self._stopped.wait(self._interval) and self._probe():
            pass

    def _probe(self) -> bool:
        """Time one callback through the loop; False once there is nothing left to watch."""
        ran = threading.Event()
        ran_at: list[float] = []

        def callback() -> None:
            ran_at.append(time.monotonic())
            ran.set()

        sent = self._pending_since = time.monotonic()
        try:
            self._loop.call_soon_threadsafe(callback)
        except RuntimeError:  # the loop was closed
            return False
        blocked = False
        while not ran.wait(self._threshold or self._interval):
            if self._stopped.is_set():
                return False
            if self._threshold and not blocked:
                blocked = True
                self._report_block(time.monotonic() - sent)
        self._pending_since = None
        lag = self._last_lag = ran_at[0] - sent
        self._observe(lag)
        if blocked:
            self._log.info("event loop runs again", blocked_seconds=round(lag, 3))
        return True

    def _report_block(self, waited: float) -> None:
        frame = sys._current_frames().get(self._loop_thread)
        stack = traceback.format_stack(frame, limit=_STACK_FRAMES) if frame else []
        where = stack[-1].strip().splitlines()[0] if stack else "unknown"
        self._log.warning(
            "event loop blocked",
            blocked_seconds=round(waited, 3),
            threshold=self._threshold,
            where=where,
            stack="".join(stack),
        )
