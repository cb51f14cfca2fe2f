"""The cycle loop: ``cleanup()`` then ``run()`` on the service's schedule, within limits.

It owns when cycles start (the ``Schedule``, jitter, ``run_at_start``, and the
failure limit that ends the loop), how long one may take (``cycle_timeout``,
and ``shutdown_grace`` once a shutdown is requested), and what a cycle's
outcome is. It reports every start and outcome to the service's
``CycleHistory`` and ``ServiceMetrics``, and logs failures: a traceback the
first time a failure is seen at a place, one line with its count after that.

Missed starts are never replayed. A cycle that runs past the next planned
start (or a wait that wakes past one: a suspended process, a wall clock that
jumped, a blocked loop) is followed by one cycle at once, the schedule
resuming at the first planned start after it; the starts passed over without
a cycle of their own are counted as ``cycles_skipped``.
"""

from __future__ import annotations

import asyncio
import random
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

from bigbrotr.core.clock import Clock
from bigbrotr.core.history import CycleHistory, message_of, shortened
from bigbrotr.core.logger import Throttle
from bigbrotr.core.service_config import BaseServiceConfig
from bigbrotr.core.service_metrics import ServiceMetrics

__all__ = ["CycleLoop"]

#: The longest single wait for a wall-clock start: the clock is read again after it, so
#: a wall clock that jumps (or a process resumed) is noticed within this many seconds.
_WALL_RECHECK = 60.0


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
        self._schedule = config.cycle_schedule()
        #: The next cycle's planned start on the schedule's time base, and its jitter;
        #: None until the first is planned (when the service starts).
        self._planned: float | None = None
        self._jitter = 0.0
        #: The same start as Unix time, for the status page (read from other threads).
        self.next_start_at: float | None = None
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
        """Run cycles on the schedule until told to stop.

        Args:
            wait: Sleeps and says whether to stop (``BaseService.wait``).

        Returns:
            True if ``max_consecutive_failures`` cycles failed in a row.
        """
        limit = self._config.max_consecutive_failures
        at_once = self._planned is None and self._config.runs_at_start()
        while not self.shutdown.is_set():
            if not at_once and await self._wait_for_start(wait):
                break
            at_once = False
            await self.run_cycle()
            if limit and self._history.now.consecutive_failures >= limit:
                self._log.error("failure limit reached, stopping", consecutive_failures=limit)
                self.request_shutdown()
                return True
        return False

    def _now(self) -> float:
        """The present on the schedule's time base."""
        return self._clock.time() if self._schedule.wall else self._clock.monotonic()

    def next_start(self) -> float:
        """The next cycle's planned start, jitter included, as Unix time.

        The first call plans the first cycle: at once (``run_at_start``) or at
        the schedule's first start.
        """
        if self._planned is None:
            now = self._now()
            if self._config.runs_at_start():
                self._plan(now, jitter=False)
            else:
                self._plan(self._schedule.after(now), jitter=True)
        assert self.next_start_at is not None
        return self.next_start_at

    def _plan(self, start: float, *, jitter: bool) -> None:
        """Plan the next cycle at ``start`` (schedule time), with a random delay if asked."""
        wanted = self._config.jitter if jitter else 0.0
        self._jitter = random.uniform(0.0, wanted) if wanted else 0.0
        self._planned = start
        at = start + self._jitter  # Unix time already with cron; else from monotonic
        if not self._schedule.wall:
            at = self._clock.time() + (at - self._now())
        self.next_start_at = at
        self._metrics.next_cycle(at)

    async def _wait_for_start(self, wait: Callable[[float], Awaitable[bool]]) -> bool:
        """Sleep until the next planned start; whether shutdown came first.

        A wall-clock start is waited for in slices, reading the wall clock
        after each, so a clock that jumps moves the start with it.
        """
        self.next_start()  # plans the first cycle
        assert self._planned is not None
        target, wall = self._planned + self._jitter, self._schedule.wall
        while True:  # waits at least once (for 0 s when due): shutdown is seen there
            left = max(0.0, target - self._now())
            if await wait(min(left, _WALL_RECHECK) if wall else left):
                return True
            if not wall or self._now() >= target:
                return False

    async def run_cycle(self) -> bool:
        """Run one cycle and report it; see ``BaseService.run_cycle``.

        Returns:
            True if the cycle succeeded.
        """
        clock = self._clock
        started = clock.monotonic()
        anchor = self._anchor()
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
            self._metrics.cycle_ended(ran_past=self._plan_after(anchor))
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

    def _anchor(self) -> float:
        """The planned start this cycle stands for (schedule time); counts starts passed over.

        Normally the start that was waited for. A cycle started later than the
        next planned start after that one (the wait woke late, or the caller
        runs cycles itself) stands for now, and the starts in between are
        skipped. One started early (a caller running cycles at will) stands
        for now too.
        """
        self.next_start()  # a first cycle run directly is planned like any other
        planned, now = self._planned, self._now()
        assert planned is not None
        if now < planned:
            return now
        passed = self._schedule.missed(planned, now)
        self._metrics.cycles_skipped(passed)
        return now if passed else planned

    def _plan_after(self, anchor: float) -> bool:
        """Plan the next cycle after one standing for ``anchor``; whether it ran past a start.

        Past the next planned start, the next cycle starts at once and the
        planned starts it ran over beyond that one are skipped.
        """
        following, now = self._schedule.after(anchor), self._now()
        if following >= now:
            self._plan(following, jitter=True)
            return False
        self._metrics.cycles_skipped(self._schedule.missed(anchor, now) - 1)
        self._plan(now, jitter=False)
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
