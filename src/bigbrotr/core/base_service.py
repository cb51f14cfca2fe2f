"""The service base class: the user's facade over the cycle loop, its metrics and history.

A service subclasses ``BaseService``, sets ``SERVICE_NAME`` and ``CONFIG_CLASS``,
and writes ``run()`` (one bounded unit of work) and, if it needs one,
``cleanup()``. ``run_forever()`` calls them on a start-to-start schedule,
counts successes and failures, and stops on request or after too many
failures in a row. Behind the facade each concern is an object of its own:
``CycleLoop`` (schedule, timeout, grace, failure limit), ``ServiceMetrics``
(every series), ``CycleHistory`` (what health and the status page read), all
on one ``Clock``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from types import TracebackType
from typing import Any, ClassVar, Generic, Self, TypeVar, cast

from bigbrotr import __version__
from bigbrotr.core.async_collectors import adopt_loop
from bigbrotr.core.clock import Clock, current_clock
from bigbrotr.core.config import describe_validation_error
from bigbrotr.core.cycle import CycleLoop
from bigbrotr.core.health import HealthSnapshot
from bigbrotr.core.history import CycleHistory, Cycles
from bigbrotr.core.logger import get_logger
from bigbrotr.core.service_config import BaseServiceConfig, load_config
from bigbrotr.core.service_metrics import Declared, ServiceMetrics
from bigbrotr.core.status import StatusSnapshot
from bigbrotr.core.timing import Observer, Timer
from bigbrotr.core.watchdog import LoopWatchdog

__all__ = [
    "BaseService",
    "BaseServiceConfig",
    "describe_validation_error",
    "load_config",
    "named",
]

ConfigT = TypeVar("ConfigT", bound=BaseServiceConfig)
_name: ContextVar[str | None] = ContextVar("bigbrotr_service_name", default=None)


@contextlib.contextmanager
def named(name: str) -> Iterator[str]:
    """Services built inside this block are named ``name`` instead of their ``SERVICE_NAME``.

    One class can then run twice in a process, with two configs and two
    ``service`` labels (``bigbrotr run`` does this for each entry of a process
    file). It works whatever the class's ``__init__`` takes, as ``using_clock``.
    """
    token = _name.set(name)
    try:
        yield name
    finally:
        _name.reset(token)


@functools.cache
def _declarations(service_class: type) -> tuple[tuple[str, Declared], ...]:
    """The metrics declared on a service class and its bases, by attribute name."""
    found: dict[str, Declared] = {}
    for klass in reversed(service_class.__mro__):
        for attribute, value in vars(klass).items():
            if isinstance(value, Declared):
                if hasattr(BaseService, attribute) or attribute == "log":  # the runtime's
                    raise TypeError(
                        f"{service_class.__name__}.{attribute}: a metric cannot take the name "
                        "of a BaseService attribute; give it another"
                    )
                found[attribute] = value
            else:  # a subclass may replace a declaration with something else
                found.pop(attribute, None)
    return tuple(found.items())


class _OverriddenClock:
    """A clock whose monotonic time is a subclass's own ``clock()`` (waits still pass time)."""

    def __init__(self, monotonic: Callable[[], float], clock: Clock) -> None:
        self.monotonic = monotonic
        self.time = clock.time
        self.wait = clock.wait


class BaseService(ABC, Generic[ConfigT]):
    """A long-lived service that runs one bounded unit of work per cycle.

    Subclasses set ``SERVICE_NAME`` (the ``service`` label of every metric) and
    ``CONFIG_CLASS``, and implement ``run()`` (and ``cleanup()`` if cycles leave
    something behind). Subclasses may take extra dependencies as further
    ``__init__`` parameters (``bigbrotr run`` then takes a factory), and declare
    metrics of their own as class attributes (``bigbrotr.core.service_metrics``),
    which ``__init__`` binds to the service.

    Examples:
        async with MyService.from_yaml("my.yaml") as service:
            await service.run_forever()
    """

    SERVICE_NAME: ClassVar[str]
    #: The service's own version: ``service_info{version}`` and the status page.
    SERVICE_VERSION: ClassVar[str] = ""
    CONFIG_CLASS: ClassVar[type[BaseServiceConfig]] = BaseServiceConfig

    def __init__(self, config: ConfigT | None = None) -> None:
        if (override := _name.get()) is not None:
            self.__dict__["SERVICE_NAME"] = override  # this instance's name (``named``)
        if not getattr(self, "SERVICE_NAME", ""):
            raise TypeError(f"{type(self).__name__} must set the class variable SERVICE_NAME")
        self._config = config if config is not None else cast(ConfigT, self.CONFIG_CLASS())
        #: The service's structured logger (structlog), bound to its name.
        self.log = get_logger(type(self).__module__, service=self.SERVICE_NAME)
        self._system = current_clock()
        #: What every part reads; a subclass that overrides ``clock()`` keeps its say.
        self._clock: Clock = self._system
        if type(self).clock is not BaseService.clock:
            self._clock = _OverriddenClock(self.clock, self._system)
        self._started = False
        self._watchdog_now: LoopWatchdog | None = None
        self._history = CycleHistory(self._clock)
        self._schedule = self._config.cycle_schedule()
        self._metrics = ServiceMetrics(
            self.SERVICE_NAME, self._config.metrics, self._clock, self.log
        )
        self._cycles = CycleLoop(
            self._config, self._clock, self._cleanup_and_run, self._history, self._metrics, self.log
        )
        self._set_declared(self._metrics.bind(_declarations(type(self))))

    def _set_declared(self, bound: dict[str, Any]) -> None:
        for attribute, metric in bound.items():
            setattr(self, attribute, metric)

    @property
    def config(self) -> ConfigT:
        """The validated configuration (read-only)."""
        return self._config

    @property
    def is_running(self) -> bool:
        """True from ``async with`` or ``run_forever()`` until shutdown is requested."""
        return self._started and not self._cycles.shutdown.is_set()

    @classmethod
    def from_dict(cls, data: dict[str, Any], **kwargs: Any) -> Self:
        """Build the service from a configuration mapping.

        Args:
            data: Configuration values, validated by ``CONFIG_CLASS``.
            **kwargs: Extra dependencies passed on to ``__init__``.

        Raises:
            pydantic.ValidationError: If a value is invalid or a key unknown.
        """
        return cls(cast(ConfigT, cls.CONFIG_CLASS.model_validate(data)), **kwargs)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str], **kwargs: Any) -> Self:
        """Build the service from a YAML file (see ``load_yaml``).

        Args:
            path: The YAML file.
            **kwargs: Extra dependencies passed on to ``__init__``.

        Raises:
            FileNotFoundError: If the file does not exist.
            ConfigFileError: If the file cannot be parsed or a value is invalid;
                the message names the file and the field or line.
        """
        return cls(cast(ConfigT, load_config(cls.CONFIG_CLASS, path)), **kwargs)

    def clock(self) -> float:
        """Monotonic seconds on the service's clock (schedules, durations, health).

        The clock is the one current when the service was built (see
        ``bigbrotr.core.clock.using_clock``); the testing kit's is fake. A
        subclass may still override this method: schedules, durations and
        health then read it.
        """
        return self._system.monotonic()

    @abstractmethod
    async def run(self) -> None:
        """Do one bounded unit of work. An exception marks the cycle failed."""

    async def cleanup(self) -> int:
        """Release what the previous cycle left behind, before each ``run()``.

        Does nothing by default; override it when cycles leave something behind.

        Returns:
            How many items were cleaned up (for logs).
        """
        return 0

    def request_shutdown(self) -> None:
        """Ask the loop to stop after the current cycle; interrupts the wait at once.

        A cycle in progress then has at most ``shutdown_grace`` seconds left
        before it is cancelled. Call it on the event loop (a loop callback or
        a coroutine).
        """
        self._cycles.request_shutdown()

    async def wait(self, timeout: float) -> bool:  # noqa: ASYNC109 (the seed's API)
        """Sleep up to ``timeout`` seconds, waking early on shutdown.

        Returns:
            True if shutdown was requested.
        """
        return await self._cycles.wait(timeout)

    async def __aenter__(self) -> Self:
        self._start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.request_shutdown()

    async def run_forever(self) -> bool:
        """Run cycles on the service's schedule until told to stop.

        ``interval`` counts start to start; ``schedule`` is a cron expression
        in ``timezone``; the first cycle runs at once or not (``run_at_start``).
        A cycle that runs past the next planned start is followed at once by
        the next; the planned starts it passed over are counted
        (``cycles_skipped``), never replayed.
        After a shutdown request, a cycle in progress has ``shutdown_grace``
        seconds to finish before it is cancelled. ``CancelledError``,
        ``KeyboardInterrupt`` and ``SystemExit`` propagate; any other exception
        fails the cycle and the loop goes on.

        Returns:
            True if the loop stopped because ``max_consecutive_failures``
            cycles failed in a row; False if shutdown was requested.
        """
        self._start()
        watchdog = self._watchdog_now = self._watchdog()
        try:
            return await self._cycles.run(self.wait)
        finally:
            self._watchdog_now = None
            if watchdog is not None:
                watchdog.stop()

    async def run_cycle(self) -> bool:
        """Run one cycle, ``cleanup()`` then ``run()``, and record its metrics.

        The cycle is cancelled and counted failed (``TimeoutError``) after
        ``cycle_timeout`` seconds, and cancelled (logged, not counted)
        ``shutdown_grace`` seconds after a shutdown request. While it runs,
        ``service_gauge`` named ``cycle_in_progress_start_timestamp`` holds its
        start (Unix time; 0 between cycles), so a hung cycle shows in alerts.
        A cycle longer than ``interval`` (failed or not; with ``schedule``, one
        that runs past the next planned start) adds to
        ``cycles_over_interval``: "more than 5% of them" is the exact "p95 of
        the cycle duration exceeds the interval".

        Returns:
            True if the cycle succeeded.
        """
        self._start()
        return await self._cycles.run_cycle()

    def next_start(self) -> float:
        """When the next cycle is planned to start (Unix time, jitter included).

        Before the first cycle this plans it: now with ``run_at_start``, else
        the schedule's first start. The testing kit moves its clock here.
        """
        return self._cycles.next_start()

    def health(self) -> HealthSnapshot:
        """The service's state for ``/healthz`` and ``/readyz``; safe from any thread."""
        return self._health(self._history.now)

    def _health(self, cycles: Cycles) -> HealthSnapshot:
        config = self._config
        gap = self._schedule.longest_gap  # a daily job is not stale between its runs
        stale_after = config.stale_after or (2 * gap + (config.cycle_timeout or gap))
        watchdog = self._watchdog_now
        return HealthSnapshot(
            now=self._clock.monotonic(),
            started_at=cycles.started_at,
            loop_blocked_for=watchdog.blocked_for() if watchdog is not None else None,
            loop_block_threshold=config.loop_block_threshold,
            consecutive_failures=cycles.consecutive_failures,
            max_consecutive_failures=config.max_consecutive_failures,
            last_success_at=cycles.last_success_at,
            cycle_started_at=cycles.cycle_started_at,
            stale_after=stale_after,
            shutting_down=self._cycles.shutdown.is_set(),
        )

    def status(self) -> StatusSnapshot:
        """The service's state for the status page at ``/``; safe from any thread."""
        watchdog, cycles = self._watchdog_now, self._history.now  # one moment, read once
        return StatusSnapshot(
            service=self.SERVICE_NAME,
            version=self.SERVICE_VERSION,
            bigbrotr_version=__version__,
            now=self._clock.time(),
            health=self._health(cycles),
            cycles_succeeded=cycles.succeeded,
            cycles_failed=cycles.failed,
            interval=self._schedule.longest_gap,
            schedule=self._schedule.text,
            next_start=self._cycles.next_start_at,
            last_error=cycles.last_error,
            recent=cycles.recent,
            loop_lag=watchdog.lag() if watchdog is not None else None,
        )

    def _watchdog(self) -> LoopWatchdog | None:
        """Start watching this loop (``loop_block_threshold``; 0 means no watchdog)."""
        threshold = self._config.loop_block_threshold
        if not threshold:
            return None
        watchdog = LoopWatchdog(
            asyncio.get_running_loop(),
            threshold=threshold,
            observe=self._metrics.loop_lag(),
            service=self.SERVICE_NAME,
        )
        watchdog.start()
        return watchdog

    async def _cleanup_and_run(self) -> int:
        cleaned = await self.cleanup()
        await self.run()
        return cleaned

    def remove_metrics(self) -> None:
        """Drop every series of this service from the registry (tests; a service retired).

        Call it once the service has stopped. Automatic and helper series, timed
        operations, declared metrics and the watchdog's lag go; ``service_info``
        (one per process) stays. Declared metrics are bound anew (those without
        labels of their own reappear at 0); children kept from before are no
        longer exported.
        """
        self._set_declared(self._metrics.remove())

    def timed(self, operation: str | Observer) -> Timer:
        """Time a block or function into a histogram: ``async with self.timed("fetch"):``.

        Args:
            operation: A name, observed into ``service_operation_duration_seconds``
                with ``operation=<name>`` (at most ``metrics.max_names`` names, as
                for gauges), or a declared histogram or summary (its child) to
                observe into.

        Returns:
            A ``Timer``: use it with ``with`` or ``async with`` (one block each), or
            as a decorator of sync or async functions (every call is timed).
        """
        if isinstance(operation, str):
            return Timer(self._metrics.operations[operation].observe)
        return Timer(operation.observe)

    def set_gauge(self, name: str, value: float) -> None:
        """Set ``service_gauge{service, name}``; a no-op when metrics are off."""
        self._metrics.gauges[name].set(value)

    def inc_gauge(self, name: str, value: float = 1) -> None:
        """Raise ``service_gauge{service, name}`` by ``value``."""
        self._metrics.gauges[name].inc(value)

    def dec_gauge(self, name: str, value: float = 1) -> None:
        """Lower ``service_gauge{service, name}`` by ``value``."""
        self._metrics.gauges[name].dec(value)

    def inc_counter(self, name: str, value: float = 1) -> None:
        """Add ``value`` to ``service_counter_total{service, name}``.

        Raises:
            ValueError: If metrics are on and ``value`` is negative (counters
                only go up).
        """
        self._metrics.counters[name].inc(value)

    def _start(self) -> None:
        """Mark the service started and export its baseline metrics, once."""
        if self._started:
            return
        self._started = True
        with contextlib.suppress(RuntimeError):  # no loop yet: async collectors wait for one
            adopt_loop(asyncio.get_running_loop())
        self._history.start()
        config = self._config
        # interval_seconds: the longest gap, which the staleness alerts compare against
        gap = self._schedule.longest_gap
        self._metrics.start(self.SERVICE_VERSION, gap, config.max_consecutive_failures)
