"""The service base class: a fixed-schedule cycle loop with automatic metrics.

A service subclasses ``BaseService``, sets ``SERVICE_NAME`` and ``CONFIG_CLASS``,
and writes ``run()`` (one bounded unit of work) and ``cleanup()``. The loop in
``run_forever()`` calls them on a start-to-start schedule, counts successes and
failures, and stops on request or after too many failures in a row.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import time
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable
from types import TracebackType
from typing import Any, ClassVar, Generic, Self, TypeVar, cast

from bigbrotr import __version__
from bigbrotr.core.async_collectors import adopt_loop
from bigbrotr.core.config import describe_validation_error
from bigbrotr.core.health import HealthSnapshot
from bigbrotr.core.logger import get_logger
from bigbrotr.core.metrics import (
    CYCLE_DURATION_SECONDS,
    EVENT_LOOP_LAG_SECONDS,
    OPERATION_DURATION_SECONDS,
    SERVICE_COUNTER,
    SERVICE_GAUGE,
    SERVICE_INFO,
    SERVICE_NAME_OVERFLOW,
)
from bigbrotr.core.named_children import (
    CounterChild,
    GaugeChild,
    NamedChildren,
)
from bigbrotr.core.service_config import BaseServiceConfig, load_config
from bigbrotr.core.service_metrics import OVERFLOW, Declared
from bigbrotr.core.status import HISTORY, CycleRecord, LastError, StatusSnapshot
from bigbrotr.core.timing import Observer, Timer
from bigbrotr.core.watchdog import LoopWatchdog

__all__ = ["BaseService", "BaseServiceConfig", "describe_validation_error", "load_config"]

#: Distinct (exception type, place) pairs whose repeats are counted; past it, every
#: new kind is logged with its traceback (bounded memory, nothing hidden).
_MAX_FAILURE_KINDS = 1000
_MAX_ERROR_TEXT = 1000


def _ignore(value: float) -> None:
    """Take a measurement nobody records (metrics off)."""


def _shortened(text: str) -> str:
    """At most ``_MAX_ERROR_TEXT`` characters: an exception message can be a whole payload.

    Lone surrogates (``os.fsdecode`` of a file name that is not UTF-8) become
    escapes, so the message can be sent as UTF-8 (the status page, JSON logs).
    """
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(text) <= _MAX_ERROR_TEXT:
        return text
    return f"{text[:_MAX_ERROR_TEXT]}... ({len(text) - _MAX_ERROR_TEXT} more characters)"


ConfigT = TypeVar("ConfigT", bound=BaseServiceConfig)


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


class BaseService(ABC, Generic[ConfigT]):
    """A long-lived service that runs one bounded unit of work per cycle.

    Subclasses set ``SERVICE_NAME`` (the ``service`` label of every metric) and
    ``CONFIG_CLASS``, and implement ``run()`` and ``cleanup()``. Subclasses may
    take extra dependencies as further ``__init__`` parameters, and declare
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
        if not getattr(self, "SERVICE_NAME", ""):
            raise TypeError(f"{type(self).__name__} must set the class variable SERVICE_NAME")
        self._config = config if config is not None else cast(ConfigT, self.CONFIG_CLASS())
        #: The service's structured logger (structlog), bound to its name.
        self.log = get_logger(type(self).__module__, service=self.SERVICE_NAME)
        self._shutdown = asyncio.Event()
        self._started = False
        self._consecutive_failures = 0
        self._cycle_scope: asyncio.Timeout | None = None
        self._started_at = time.monotonic()
        self._last_success_at: float | None = None
        self._cycle_started_at: float | None = None
        self._watchdog_now: LoopWatchdog | None = None
        self._failures_seen: dict[tuple[str, str], int] = {}
        self._cut_by_grace = False
        self._succeeded = self._failed = 0
        self._last_error: LastError | None = None
        # Replaced whole on each cycle, never mutated: the server thread reads it.
        self._recent: tuple[CycleRecord, ...] = ()
        enabled = self._config.metrics.enabled
        name, limit = self.SERVICE_NAME, self._config.metrics.max_names
        self._counters: NamedChildren[CounterChild] = NamedChildren(
            (lambda n: SERVICE_COUNTER.labels(name, n)) if enabled else None,
            limit,
            self._overflow_counter("service_counter"),
        )
        self._gauges: NamedChildren[GaugeChild] = NamedChildren(
            (lambda n: SERVICE_GAUGE.labels(name, n)) if enabled else None,
            limit,
            self._overflow_counter("service_gauge"),
        )
        self._operations: NamedChildren[Observer] = NamedChildren(
            (lambda n: cast(Observer, OPERATION_DURATION_SECONDS.labels(name, n)))
            if enabled
            else None,
            limit,
            self._overflow_counter("service_operation_duration_seconds"),
        )
        self._bind_declared(enabled)

    def _bind_declared(self, enabled: bool) -> None:
        """Set each declared metric's attribute; label sets bounded by ``max_names``."""
        limit = self._config.metrics.max_names
        for attribute, declared in _declarations(type(self)):
            overflow = self._overflow_counter(declared.name) if declared.label_names else None
            bound = declared.bind(
                self.SERVICE_NAME, enabled=enabled, limit=limit, on_overflow=overflow
            )
            setattr(self, attribute, bound)

    def _overflow_counter(self, family: str) -> Callable[[str], None]:
        """Count (and the first time, log) an update folded into ``__overflow__``."""
        limit = self._config.metrics.max_names

        folded = None

        def overflow(name: str) -> None:
            nonlocal folded
            if folded is None:
                folded = SERVICE_NAME_OVERFLOW.labels(self.SERVICE_NAME, family)
                self.log.warning(
                    "too many metric names, folding new ones into __overflow__",
                    family=family,
                    max_names=limit,
                    first_folded=_shortened(name),
                )
            folded.inc()

        return overflow

    @property
    def config(self) -> ConfigT:
        """The validated configuration (read-only)."""
        return self._config

    @property
    def is_running(self) -> bool:
        """True from ``async with`` or ``run_forever()`` until shutdown is requested."""
        return self._started and not self._shutdown.is_set()

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

    @staticmethod
    def clock() -> float:
        """Monotonic seconds used for scheduling and cycle durations.

        Tests override it to control time instead of sleeping.
        """
        return time.monotonic()

    @abstractmethod
    async def run(self) -> None:
        """Do one bounded unit of work. An exception marks the cycle failed."""

    @abstractmethod
    async def cleanup(self) -> int:
        """Release what the previous cycle left behind, before each ``run()``.

        Returns:
            How many items were cleaned up (for logs).
        """

    def request_shutdown(self) -> None:
        """Ask the loop to stop after the current cycle; interrupts the wait at once.

        A cycle in progress then has at most ``shutdown_grace`` seconds left
        before it is cancelled. Call it on the event loop (a loop callback or
        a coroutine).
        """
        self._shutdown.set()
        self._apply_shutdown_grace()

    async def wait(self, timeout: float) -> bool:  # noqa: ASYNC109 (the seed's API)
        """Sleep up to ``timeout`` seconds, waking early on shutdown.

        Returns:
            True if shutdown was requested.
        """
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._shutdown.wait(), timeout)
        return self._shutdown.is_set()

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
        """Run cycles on a fixed start-to-start schedule until told to stop.

        A cycle that overruns the interval is followed at once by the next.
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
            return await self._cycles()
        finally:
            self._watchdog_now = None
            if watchdog is not None:
                watchdog.stop()

    def health(self) -> HealthSnapshot:
        """The service's state for ``/healthz`` and ``/readyz``; safe from any thread."""
        config = self._config
        stale_after = config.stale_after or (
            2 * config.interval + (config.cycle_timeout or config.interval)
        )
        watchdog = self._watchdog_now
        return HealthSnapshot(
            now=time.monotonic(),
            started_at=self._started_at,
            loop_blocked_for=watchdog.blocked_for() if watchdog is not None else None,
            loop_block_threshold=config.loop_block_threshold,
            consecutive_failures=self._consecutive_failures,
            max_consecutive_failures=config.max_consecutive_failures,
            last_success_at=self._last_success_at,
            cycle_started_at=self._cycle_started_at,
            stale_after=stale_after,
            shutting_down=self._shutdown.is_set(),
        )

    def status(self) -> StatusSnapshot:
        """The service's state for the status page at ``/``; safe from any thread."""
        watchdog = self._watchdog_now
        return StatusSnapshot(
            service=self.SERVICE_NAME,
            version=self.SERVICE_VERSION,
            bigbrotr_version=__version__,
            now=time.time(),
            health=self.health(),
            cycles_succeeded=self._succeeded,
            cycles_failed=self._failed,
            interval=self._config.interval,
            last_error=self._last_error,
            recent=self._recent,
            loop_lag=watchdog.lag() if watchdog is not None else None,
        )

    def _remember(self, duration: float, error: Exception | None = None) -> None:
        """Add a finished cycle to the recent history the status page charts."""
        kind = "" if error is None else type(error).__name__
        record = CycleRecord(time.time(), duration, error is None, kind)
        self._recent = (*self._recent[-(HISTORY - 1) :], record)

    async def _cycles(self) -> bool:
        limit = self._config.max_consecutive_failures
        while not self._shutdown.is_set():
            started = self.clock()
            await self.run_cycle()
            if limit and self._consecutive_failures >= limit:
                self.log.error("failure limit reached, stopping", consecutive_failures=limit)
                self.request_shutdown()
                return True
            if await self.wait(max(0.0, self._config.interval - (self.clock() - started))):
                break
        return False

    def _watchdog(self) -> LoopWatchdog | None:
        """Start watching this loop (``loop_block_threshold``; 0 means no watchdog)."""
        threshold = self._config.loop_block_threshold
        if not threshold:
            return None
        observe: Callable[[float], None] = _ignore
        if self._config.metrics.enabled:
            observe = EVENT_LOOP_LAG_SECONDS.labels(self.SERVICE_NAME).observe
        watchdog = LoopWatchdog(
            asyncio.get_running_loop(),
            threshold=threshold,
            observe=observe,
            service=self.SERVICE_NAME,
        )
        watchdog.start()
        return watchdog

    async def run_cycle(self) -> bool:
        """Run one cycle, ``cleanup()`` then ``run()``, and record its metrics.

        The cycle is cancelled and counted failed (``TimeoutError``) after
        ``cycle_timeout`` seconds, and cancelled (logged, not counted)
        ``shutdown_grace`` seconds after a shutdown request. While it runs,
        ``service_gauge`` named ``cycle_in_progress_start_timestamp`` holds its
        start (Unix time; 0 between cycles), so a hung cycle shows in alerts.
        A cycle longer than ``interval`` (failed or not) adds to
        ``cycles_over_interval``: "more than 5% of them" is the exact "p95 of
        the cycle duration exceeds the interval".

        Returns:
            True if the cycle succeeded.
        """
        self._start()
        started = self.clock()
        timeout = self._config.cycle_timeout
        deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
        self.set_gauge("cycle_in_progress_start_timestamp", time.time())
        self._cycle_started_at = time.monotonic()
        scope = self._cycle_scope = asyncio.timeout_at(deadline)
        try:
            async with scope:
                self._apply_shutdown_grace()
                cleaned = await self._cleanup_and_run()
        except Exception as exc:
            if isinstance(exc, TimeoutError) and scope.expired():
                if self._cut_by_grace:
                    grace = self._config.shutdown_grace
                    self.log.warning("cycle cancelled: still running after shutdown_grace",
                                      shutdown_grace=grace)  # fmt: skip
                    return False
                exc = TimeoutError(f"cycle took longer than cycle_timeout={timeout}s")
            self._record_failure(exc)
            self._remember(self.clock() - started, exc)
            return False
        finally:
            self._cycle_scope, self._cut_by_grace = None, False
            self._cycle_started_at = None
            self.set_gauge("cycle_in_progress_start_timestamp", 0)
            if self.clock() - started > self._config.interval:  # the next one starts late
                self.inc_counter("cycles_over_interval")
        duration = self.clock() - started
        self._last_success_at = time.monotonic()
        self._consecutive_failures = 0
        self._succeeded += 1
        self._remember(duration)
        self.inc_counter("cycles_success")
        self.set_gauge("consecutive_failures", 0)
        self.set_gauge("last_cycle_timestamp", time.time())
        if self._config.metrics.enabled:
            CYCLE_DURATION_SECONDS.labels(self.SERVICE_NAME).observe(duration)
        self.log.debug("cycle done", duration_seconds=round(duration, 6), cleaned=cleaned)
        return True

    def _record_failure(self, exc: Exception) -> None:
        """Count a failed cycle and log it: the traceback once per type and place.

        A service failing every second would otherwise write a traceback every
        second; the repeats are one line each, with how often this failure has
        been seen.
        """
        # The error first: a status page read meanwhile never shows a streak without it.
        self._last_error = LastError(type(exc).__name__, _shortened(str(exc)), time.time())
        self._failed += 1
        self._consecutive_failures += 1
        self.inc_counter("cycles_failed")
        self.inc_counter(f"errors_{type(exc).__name__}")
        self.set_gauge("consecutive_failures", self._consecutive_failures)
        frames = traceback.extract_tb(exc.__traceback__)
        place = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
        key = (type(exc).__name__, place)
        seen = self._failures_seen.get(key, 0) + 1
        if seen > 1 or len(self._failures_seen) < _MAX_FAILURE_KINDS:
            self._failures_seen[key] = seen
        self.log.error(
            "cycle failed",
            error=_shortened(f"{type(exc).__name__}: {exc}"),
            at=place,
            consecutive_failures=self._consecutive_failures,
            **({"exc_info": exc} if seen == 1 else {"repeat": seen}),
        )

    def _apply_shutdown_grace(self) -> None:
        """Once shutdown is requested, end the cycle in progress within ``shutdown_grace``."""
        scope = self._cycle_scope
        if scope is None or not self._shutdown.is_set() or self._cut_by_grace or scope.expired():
            return
        deadline = asyncio.get_running_loop().time() + self._config.shutdown_grace
        current = scope.when()
        if current is None or deadline < current:
            scope.reschedule(deadline)
            self._cut_by_grace = True

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
        if not self._config.metrics.enabled:
            return
        name = self.SERVICE_NAME
        by_name = (
            (SERVICE_COUNTER, self._counters, "service_counter"),
            (SERVICE_GAUGE, self._gauges, "service_gauge"),
            (OPERATION_DURATION_SECONDS, self._operations, "service_operation_duration_seconds"),
        )
        for family, children, family_name in by_name:
            for child_name in [*children, OVERFLOW]:
                with contextlib.suppress(KeyError):
                    family.remove(name, child_name)
            children.clear()
            children.__dict__.pop("_overflow", None)  # the cached __overflow__ child
            with contextlib.suppress(KeyError):
                SERVICE_NAME_OVERFLOW.remove(name, family_name)
        for family in (CYCLE_DURATION_SECONDS, EVENT_LOOP_LAG_SECONDS):
            with contextlib.suppress(KeyError):
                family.remove(name)
        for attribute, declared in _declarations(type(self)):
            declared.remove(name, getattr(self, attribute))
            with contextlib.suppress(KeyError):
                SERVICE_NAME_OVERFLOW.remove(name, declared.name)
        self._bind_declared(enabled=True)

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
            return Timer(self._operations[operation].observe)
        return Timer(operation.observe)

    def set_gauge(self, name: str, value: float) -> None:
        """Set ``service_gauge{service, name}``; a no-op when metrics are off."""
        self._gauges[name].set(value)

    def inc_gauge(self, name: str, value: float = 1) -> None:
        """Raise ``service_gauge{service, name}`` by ``value``."""
        self._gauges[name].inc(value)

    def dec_gauge(self, name: str, value: float = 1) -> None:
        """Lower ``service_gauge{service, name}`` by ``value``."""
        self._gauges[name].dec(value)

    def inc_counter(self, name: str, value: float = 1) -> None:
        """Add ``value`` to ``service_counter_total{service, name}``.

        Raises:
            ValueError: If metrics are on and ``value`` is negative (counters
                only go up).
        """
        self._counters[name].inc(value)

    def _start(self) -> None:
        """Mark the service started and export its baseline metrics, once."""
        if self._started:
            return
        self._started = True
        with contextlib.suppress(RuntimeError):  # no loop yet: async collectors wait for one
            adopt_loop(asyncio.get_running_loop())
        self._started_at = time.monotonic()
        if self._config.metrics.enabled:
            SERVICE_INFO.info(
                {
                    "service": self.SERVICE_NAME,
                    "version": self.SERVICE_VERSION or "unknown",
                    "bigbrotr_version": __version__,
                }
            )
            self.inc_counter("cycles_success", 0)
            self.inc_counter("cycles_failed", 0)
            self.inc_counter("cycles_over_interval", 0)
            self.set_gauge("consecutive_failures", 0)
            self.set_gauge("cycle_in_progress_start_timestamp", 0)
            self.set_gauge("interval_seconds", self._config.interval)
            # The alert rules compare against these: the streak limit, and the start
            # (stale before any success).
            self.set_gauge("max_consecutive_failures", self._config.max_consecutive_failures)
            self.set_gauge("start_timestamp", time.time())
            for family in ("service_counter", "service_gauge"):
                SERVICE_NAME_OVERFLOW.labels(self.SERVICE_NAME, family).inc(0)
