"""The cycle loop: ``cleanup()`` then ``run()`` on a start-to-start schedule, within limits.

It owns when cycles start (the interval, and the failure limit that ends
the loop), how long one may take (``cycle_timeout``, and ``shutdown_grace``
once a shutdown is requested), and what a cycle's outcome is. It reports
every start and outcome to the service's ``CycleHistory`` and
``ServiceMetrics``, and logs failures: a traceback the first time a failure
is seen at a place, one line with its count after that.
"""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

from bigbrotr.core.clock import Clock
from bigbrotr.core.history import CycleHistory, message_of, shortened
from bigbrotr.core.logger import Throttle
from bigbrotr.core.service_config import BaseServiceConfig
from bigbrotr.core.service_metrics import ServiceMetrics

__all__ = ["CycleLoop"]


class CycleLoop:
    """Runs a service's cycles; see the module docstring.

    Args:
        config: The service's settings (interval, limits, timeouts).
        clock: The service's clock: schedules and durations.
        work: One cycle's work (``cleanup()`` then ``run()``); returns what
            ``cleanup()`` cleaned, for the log.
        history: Told every start and outcome.
        metrics: Told every start and outcome.
        log: The service's logger.
    """

    def __init__(
        self,
        config: BaseServiceConfig,
        clock: Clock,
        work: Callable[[], Awaitable[int]],
        history: CycleHistory,
        metrics: ServiceMetrics,
        log: Any,
    ) -> None:
        self._config = config
        self._clock = clock
        self._work = work
        self._history = history
        self._metrics = metrics
        self._log = log
        self.shutdown = asyncio.Event()
        self._scope: asyncio.Timeout | None = None
        self._cut_by_grace = False
        #: Distinct (exception type, place) pairs whose repeats are counted.
        self._failures = Throttle()

    def request_shutdown(self) -> None:
        """Stop after the current cycle; the cycle has ``shutdown_grace`` seconds left."""
        self.shutdown.set()
        self._apply_shutdown_grace()

    async def wait(self, timeout: float) -> bool:  # noqa: ASYNC109 (BaseService.wait's)
        """Sleep up to ``timeout`` seconds on the clock, waking early on shutdown."""
        return await self._clock.wait(self.shutdown, timeout)

    async def run(self, wait: Callable[[float], Awaitable[bool]]) -> bool:
        """Run cycles, ``interval`` seconds from start to start, until told to stop.

        Args:
            wait: Sleeps between cycles and says whether to stop
                (``BaseService.wait``).

        Returns:
            True if ``max_consecutive_failures`` cycles failed in a row.
        """
        limit = self._config.max_consecutive_failures
        while not self.shutdown.is_set():
            started = self._clock.monotonic()
            await self.run_cycle()
            if limit and self._history.now.consecutive_failures >= limit:
                self._log.error("failure limit reached, stopping", consecutive_failures=limit)
                self.request_shutdown()
                return True
            if await wait(max(0.0, self._config.interval - (self._clock.monotonic() - started))):
                break
        return False

    async def run_cycle(self) -> bool:
        """Run one cycle and report it; see ``BaseService.run_cycle``.

        Returns:
            True if the cycle succeeded.
        """
        clock = self._clock
        started = clock.monotonic()
        timeout = self._config.cycle_timeout
        deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
        self._metrics.cycle_started()
        self._history.cycle_started()
        scope = self._scope = asyncio.timeout_at(deadline)
        error: Exception | None = None
        cut = False
        cleaned = 0
        try:
            async with scope:
                self._apply_shutdown_grace()
                cleaned = await self._work()
        except Exception as exc:
            error = exc
            if isinstance(exc, TimeoutError) and scope.expired():
                cut = self._cut_by_grace
                error = TimeoutError(f"cycle took longer than cycle_timeout={timeout}s")
        finally:  # cancelled from outside too: the cycle is no longer in progress
            self._scope, self._cut_by_grace = None, False
            duration = clock.monotonic() - started
            self._history.cycle_ended()
            self._metrics.cycle_ended(duration, self._config.interval)
        if cut:
            self._log.warning("cycle cancelled: still running after shutdown_grace",
                              shutdown_grace=self._config.shutdown_grace)  # fmt: skip
            return False
        if error is not None:
            self._failed(error, duration)
            return False
        self._history.cycle_succeeded(duration)
        self._metrics.cycle_succeeded(duration)
        self._log.debug("cycle done", duration_seconds=round(duration, 6), cleaned=cleaned)
        return True

    def _failed(self, error: Exception, duration: float) -> None:
        """Count a failed cycle and log it: the traceback once per type and place.

        A service failing every second would otherwise write a traceback every
        second; the repeats are one line each, with how often this failure has
        been seen.
        """
        self._history.cycle_failed(error, duration)
        streak = self._history.now.consecutive_failures
        self._metrics.cycle_failed(error, streak)
        frames = traceback.extract_tb(error.__traceback__)
        place = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
        seen = self._failures.note((type(error).__name__, place))
        self._log.error(
            "cycle failed",
            error=shortened(f"{type(error).__name__}: {message_of(error)}"),
            at=place,
            consecutive_failures=streak,
            **({"exc_info": error} if seen.first else {"repeat": seen.count}),
        )

    def _apply_shutdown_grace(self) -> None:
        """Once shutdown is requested, end the cycle in progress within ``shutdown_grace``."""
        scope = self._scope
        if scope is None or not self.shutdown.is_set() or self._cut_by_grace or scope.expired():
            return
        deadline = asyncio.get_running_loop().time() + self._config.shutdown_grace
        current = scope.when()
        if current is None or deadline < current:
            scope.reschedule(deadline)
            self._cut_by_grace = True
