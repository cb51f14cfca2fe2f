"""Metrics a service declares on its class, of any prometheus_client kind.

A declaration gives the metric its own name, HELP, unit, labels and buckets;
the ``service`` label is added for it. ``BaseService.__init__`` binds each
declaration to the service: the instance attribute is then prometheus_client's
own child (``self.queue.set(3)``), or, with labels of its own, an object whose
``labels(...)`` returns cached children (``self.pages.labels("200").inc()``).
With metrics off, it is a no-op stand-in and nothing is registered.

Examples:
    from bigbrotr.core import service_metrics as m

    class Fetcher(BaseService[FetcherConfig]):
        SERVICE_NAME = "fetcher"
        pages = m.Counter("pages_fetched", "Pages fetched, by HTTP status.", labels=["status"])
        fetch_time = m.Histogram("fetch_duration", "Time to fetch a page.", unit="seconds")

        async def run(self) -> None:
            with self.fetch_time.time():
                status = await fetch()
            self.pages.labels(status).inc()

Declarations sharing a name share one family (each service its own series),
if they declare it the same way; declaring it differently is an error.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import Any

from bigbrotr import __version__
from bigbrotr.core._declared import Counter, Declared, Enum, Gauge, Histogram, Info, Summary
from bigbrotr.core.clock import Clock
from bigbrotr.core.history import shortened
from bigbrotr.core.metrics import (
    CYCLE_DURATION_SECONDS,
    EVENT_LOOP_LAG_SECONDS,
    OPERATION_DURATION_SECONDS,
    SERVICE_COUNTER,
    SERVICE_GAUGE,
    SERVICE_INFO,
    SERVICE_NAME_OVERFLOW,
)
from bigbrotr.core.metrics_config import MetricsConfig
from bigbrotr.core.named_children import (
    AUTOMATIC_NAMES,
    NOOP,
    OVERFLOW,
    Bounded,
    CounterChild,
    GaugeChild,
    Labelled,
)
from bigbrotr.core.timing import Observer

__all__ = [
    "NOOP",
    "OVERFLOW",
    "Counter",
    "Declared",
    "Enum",
    "Gauge",
    "Histogram",
    "Info",
    "Labelled",
    "ServiceMetrics",
    "Summary",
]


def _family_name(family: Any) -> str:
    """A family's name, as the overflow counter's ``family`` label gives it."""
    return str(family.describe()[0].name)


def _ignore(value: float) -> None:
    """Take a measurement nobody records (metrics off)."""


class ServiceMetrics:
    """One service's series: the helpers' children, declared metrics, baselines, removal.

    Everything a service records goes through here: the seed's helpers
    (``counters``, ``gauges``), timed operations, declared metrics (``bind``),
    and the cycle loop's outcomes. Label values a service makes up are bounded
    by ``max_names`` (``Bounded``); what folds into ``__overflow__`` is counted
    in ``service_name_overflow_updates_total{family}`` and logged once per
    family. With metrics off, every child is a no-op and nothing is registered.

    Args:
        service: ``SERVICE_NAME``, the ``service`` label.
        config: The service's metrics settings.
        clock: Where timestamps in gauges come from.
        log: The service's logger, for the overflow warning.
    """

    def __init__(self, service: str, config: MetricsConfig, clock: Clock, log: Any) -> None:
        self._service = service
        self._enabled = config.enabled
        self._limit = config.max_names
        self._clock = clock
        self._log = log
        #: Families that may fold into __overflow__ -> its counter's child, once it folded.
        self._folded: dict[str, Any] = {}
        self._declared: dict[str, tuple[Declared, Any]] = {}
        self._helpers: list[tuple[Any, Bounded[str, Any]]] = []
        self.counters: Bounded[str, CounterChild] = self._helper(SERVICE_COUNTER)
        self.gauges: Bounded[str, GaugeChild] = self._helper(SERVICE_GAUGE)
        self.operations: Bounded[str, Observer] = self._helper(OPERATION_DURATION_SECONDS)

    def _helper(self, family: Any) -> Bounded[str, Any]:
        service = self._service
        children: Bounded[str, Any] = Bounded(
            (lambda name: family.labels(service, name)) if self._enabled else None,
            OVERFLOW,
            self._limit,
            self._overflow(_family_name(family)),
            AUTOMATIC_NAMES,
        )
        self._helpers.append((family, children))
        return children

    def _overflow(self, family: str) -> Callable[[str], None]:
        """Count (and the first time, log) an update folded into ``__overflow__``."""

        def overflow(name: str) -> None:
            folded = self._folded.get(family)
            if folded is None:
                folded = self._folded[family] = SERVICE_NAME_OVERFLOW.labels(self._service, family)
                self._log.warning(
                    "too many metric names, or one too long: folding into __overflow__",
                    family=family,
                    max_names=self._limit,
                    first_folded=shortened(name[:200]),  # a name may be a whole payload
                )
            folded.inc()

        self._folded.setdefault(family, None)
        return overflow

    def bind(self, declarations: Iterable[tuple[str, Declared]]) -> dict[str, Any]:
        """Bind each declared metric to the service; returns what each attribute becomes."""
        bound = {}
        for attribute, declared in declarations:
            on_overflow = self._overflow(declared.name) if declared.label_names else None
            bound[attribute] = declared.bind(
                self._service, enabled=self._enabled, limit=self._limit, on_overflow=on_overflow
            )
            self._declared[attribute] = (declared, bound[attribute])
        return bound

    def start(self, version: str, interval: float, max_consecutive_failures: int) -> None:
        """Export ``service_info`` and every automatic series at its starting value."""
        if not self._enabled:
            return
        SERVICE_INFO.info(
            {
                "service": self._service,
                "version": version or "unknown",
                "bigbrotr_version": __version__,
            }
        )
        for name in ("cycles_success", "cycles_failed", "cycles_over_interval", "cycles_skipped"):
            self.counters[name].inc(0)
        self.gauges["consecutive_failures"].set(0)
        self.gauges["cycle_in_progress_start_timestamp"].set(0)
        self.gauges["interval_seconds"].set(interval)
        # The alert rules compare against these: the streak limit, and the start
        # (stale before any success).
        self.gauges["max_consecutive_failures"].set(max_consecutive_failures)
        self.gauges["start_timestamp"].set(self._clock.time())
        for family in (SERVICE_COUNTER, SERVICE_GAUGE):
            SERVICE_NAME_OVERFLOW.labels(self._service, _family_name(family)).inc(0)

    def loop_lag(self) -> Callable[[float], None]:
        """Where the watchdog observes the event loop's lag."""
        if not self._enabled:
            return _ignore
        return EVENT_LOOP_LAG_SECONDS.labels(self._service).observe

    def cycle_started(self) -> None:
        """A cycle starts: its start shows until it ends, so a hung cycle shows in alerts."""
        self.gauges["cycle_in_progress_start_timestamp"].set(self._clock.time())

    def cycle_ended(self, *, ran_past: bool) -> None:
        """A cycle ended, whatever its outcome; one that ran past the next planned start counts."""
        self.gauges["cycle_in_progress_start_timestamp"].set(0)
        if ran_past:  # the next one starts late
            self.counters["cycles_over_interval"].inc()

    def cycles_skipped(self, count: int) -> None:
        """``count`` planned starts passed without a cycle of their own."""
        if count > 0:
            self.counters["cycles_skipped"].inc(count)

    def next_cycle(self, at: float) -> None:
        """The next cycle is planned to start at ``at`` (Unix time, jitter included)."""
        self.gauges["next_cycle_timestamp"].set(at)

    def cycle_succeeded(self, duration: float) -> None:
        """A cycle succeeded after ``duration`` seconds."""
        self.counters["cycles_success"].inc()
        self.gauges["consecutive_failures"].set(0)
        self.gauges["last_cycle_timestamp"].set(self._clock.time())
        if self._enabled:
            CYCLE_DURATION_SECONDS.labels(self._service).observe(duration)

    def cycle_failed(self, error: Exception, consecutive_failures: int) -> None:
        """A cycle failed with ``error``; the streak is now ``consecutive_failures``."""
        self.counters["cycles_failed"].inc()
        self.counters[f"errors_{type(error).__name__}"].inc()
        self.gauges["consecutive_failures"].set(consecutive_failures)

    def remove(self) -> dict[str, Any]:
        """Drop every series of this service (``service_info`` stays), and bind anew.

        Returns:
            What each declared metric's attribute becomes (those without labels
            of their own reappear at 0).
        """
        if not self._enabled:
            return {attribute: bound for attribute, (_, bound) in self._declared.items()}
        service = self._service
        for family, children in self._helpers:
            for child_name in {*children.keys_made(), OVERFLOW}:
                with contextlib.suppress(KeyError):
                    family.remove(service, child_name)
            children.reset()
        for single in (CYCLE_DURATION_SECONDS, EVENT_LOOP_LAG_SECONDS):
            with contextlib.suppress(KeyError):
                single.remove(service)
        for declared, bound in self._declared.values():
            declared.remove(service, bound)
        for family_name in self._folded:
            with contextlib.suppress(KeyError):
                SERVICE_NAME_OVERFLOW.remove(service, family_name)
            self._folded[family_name] = None  # folding again logs again
        return self.bind([(attr, declared) for attr, (declared, _) in self._declared.items()])
