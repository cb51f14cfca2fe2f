"""The one clock a service reads: monotonic time, wall time, and waiting.

Scheduling, cycle durations, health, readiness, the status page and the
timestamps in gauges all read the same ``Clock``, so a test that moves a fake
clock moves all of them together. A service takes the clock current when it
is built: the system's, or the one a ``using_clock`` block sets (the testing
kit builds services inside one with its ``FakeClock``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Protocol

__all__ = ["SYSTEM_CLOCK", "Clock", "SystemClock", "current_clock", "using_clock"]


class Clock(Protocol):
    """What a service reads time from; a fake (the testing kit's) gives all three."""

    def monotonic(self) -> float:
        """Seconds for durations and schedules (never jumps)."""

    def time(self) -> float:
        """Unix time, for what people and Prometheus read (timestamps)."""

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:  # noqa: ASYNC109
        """Wait up to ``timeout`` seconds for ``event``; returns whether it is set."""


class SystemClock:
    """The system's time."""

    def monotonic(self) -> float:
        """Seconds for durations and schedules (never jumps)."""
        return time.monotonic()

    def time(self) -> float:
        """Unix time, for what people and Prometheus read (timestamps)."""
        return time.time()

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:  # noqa: ASYNC109
        """Wait up to ``timeout`` seconds for ``event``.

        Returns:
            Whether ``event`` is set.
        """
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)
        return event.is_set()


SYSTEM_CLOCK: Clock = SystemClock()
_current: ContextVar[Clock] = ContextVar("bigbrotr_clock", default=SYSTEM_CLOCK)


def current_clock() -> Clock:
    """The clock a service built now takes: the system's unless ``using_clock`` says."""
    return _current.get()


@contextlib.contextmanager
def using_clock(clock: Clock) -> Iterator[Clock]:
    """Services built inside this block read ``clock`` (whatever their ``__init__`` takes)."""
    token = _current.set(clock)
    try:
        yield clock
    finally:
        _current.reset(token)
