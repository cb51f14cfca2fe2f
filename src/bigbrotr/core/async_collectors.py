"""Collectors whose ``collect()`` is a coroutine: values fetched at scrape time.

A queue length from a broker, a pool's state: values that must be fetched
with ``await`` when Prometheus asks. prometheus_client calls ``collect()``
synchronously, in the render thread, where nothing can be awaited. So each
async collector sits in the registry behind a proxy: before a render, the
endpoint calls ``refresh``, which runs every ``collect()`` on the event loop
the collector belongs to (the service's), within half the render timeout; the
proxy then hands the families fetched to the render, off the loop, with the
rest. At most one ``collect()`` per collector is in flight: concurrent
scrapes wait for the same one, and scrapes within ``min_interval`` of it reuse
it. One that fails or is late (the service's loop blocked, a broker hanging)
is left out of that scrape and counted; the rest of the scrape, the loop's lag
included, is still served, and a late result is kept for the next scrape.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import Protocol

from prometheus_client import REGISTRY
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import CollectorRegistry

from bigbrotr.core import self_metrics
from bigbrotr.core.logger import Throttle, get_logger
from bigbrotr.core.per_registry import PerRegistry

_log = get_logger(__name__)

__all__ = [
    "AsyncCollector",
    "adopt_loop",
    "refresh",
    "register_async_collector",
    "registered",
    "unregister_async_collector",
]


class AsyncCollector(Protocol):
    """What ``register_async_collector`` takes: an object with ``async def collect()``."""

    def collect(self) -> Awaitable[Iterable[Metric]] | AsyncIterable[Metric]:
        """The metric families, fetched now: ``async def`` returning them, or yielding them."""
        ...


#: A collector's failures are logged at most this often (seconds).
_LOG_EVERY = 60.0


@dataclass(frozen=True)
class _Result:
    """One fetch's families, when it ended (monotonic), whether served and checked."""

    families: list[Metric]
    fetched_at: float
    served: bool = False
    checked: bool = False
    problem: str | None = None


class _Proxy:
    """Stands in the registry for one async collector, holding what it last fetched.

    A fetch's result is kept when it arrives, even after the scrape that asked
    gave up waiting: the next scrape serves it (a slow collector is shown, one
    scrape late, rather than never). A result is reused for ``min_interval``
    seconds, so a scrape storm costs the service's loop one ``collect()`` per
    interval at most.
    """

    def __init__(
        self,
        collector: AsyncCollector,
        loop: asyncio.AbstractEventLoop | None,
        registry: CollectorRegistry,
        min_interval: float,
    ) -> None:
        self.collector = collector
        self.loop = loop
        self.name = type(collector).__name__
        self._min_interval = min_interval
        self._failures = self_metrics.of(registry).async_collectors.failures
        for reason in ("error", "invalid", "clash", "timeout", "no_loop"):
            self._failures.labels(self.name, reason)  # exported at 0
        #: What the render hands on: this scrape's families (or none, left out).
        self._families: list[Metric] = []
        #: The last result fetched, replaced whole (written on the collector's loop).
        self._kept: _Result | None = None
        self._pending: Future[list[Metric]] | None = None
        self._lock = threading.Lock()
        self._log_throttle = Throttle(every=_LOG_EVERY)

    def describe(self) -> list[Metric]:
        """Nothing: the registry must not call ``collect`` to learn the names."""
        return []

    def collect(self) -> list[Metric]:
        """The families the last refresh fetched (the render thread calls this)."""
        return self._families

    def excluded_by(self, wanted: Callable[[str, str], bool]) -> bool:
        """Whether a scrape's ``name[]`` filter leaves out every family it last returned."""
        kept = self._kept
        return kept is not None and not any(wanted(f.name, f.type) for f in kept.families)

    async def prepare(self, within: float) -> list[Metric]:
        """This scrape's families: kept, or fetched within ``within`` seconds (else none).

        At most one ``collect()`` is in flight; concurrent scrapes wait for the
        same one. A fetch that fails, is late or returns what cannot be
        rendered leaves this collector out of the scrape; the rest is served.
        A late result is kept and served by the next scrape, which then starts
        the following fetch without waiting for it.
        """
        kept = self._kept
        if kept is not None:
            fresh = time.monotonic() - kept.fetched_at < self._min_interval
            if fresh or not kept.served:
                if not fresh:
                    self._start_fetch()  # a late one: the next fetch starts now
                return self._serve(kept)
        pending = self._start_fetch()
        if pending is None:
            self._left_out("no_loop", "no event loop to run it on (start the service)")
            return []
        try:
            await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(pending)), within)
        except TimeoutError:
            self._left_out("timeout", f"collect() took longer than {within:g}s (kept for next)")
            return []
        except Exception as exc:
            self._left_out("error", f"{type(exc).__name__}: {exc}")
            return []
        kept = self._kept  # _keep stored it before this wait ended
        return [] if kept is None else self._serve(kept)

    def publish(
        self, families: list[Metric], taken: Callable[[str, str], bool], seen: set[str]
    ) -> None:
        """Hand ``families`` to the render, each whose name is ``taken`` or ``seen`` left out.

        Two families of one name would make the exposition invalid (promtool,
        OpenMetrics parsers), so the later one is left out, counted as a clash.
        The render reads the list only once it is whole.
        """
        kept, clashing = [], []
        for family in families:
            if family.name in seen or taken(family.name, family.type):
                clashing.append(family.name)
            else:
                seen.add(family.name)
                kept.append(family)
        self._families = kept
        if clashing:
            names = ", ".join(sorted(set(clashing)))
            self._left_out("clash", f"another family has the name {names}")

    def _start_fetch(self) -> Future[list[Metric]] | None:
        """The fetch in flight, or a new one on the collector's loop (None: no loop)."""
        with self._lock:
            pending = self._pending
            if pending is None or pending.done():
                loop = self.loop
                if loop is None or loop.is_closed():
                    return None
                pending = self._pending = asyncio.run_coroutine_threadsafe(self._fetch(), loop)
                pending.add_done_callback(self._keep)
            return pending

    def _serve(self, kept: _Result) -> list[Metric]:
        """A kept result for this scrape, checked once (here, on the server's loop)."""
        if not kept.checked:
            kept = replace(kept, checked=True, problem=_invalid(kept.families))
        self._kept = replace(kept, served=True)
        if kept.problem is not None:
            self._left_out("invalid", kept.problem)  # it would fail the whole scrape
            return []
        return kept.families

    def _keep(self, done: Future[list[Metric]]) -> None:
        """Keep a fetch's result when it arrives (the scrape may have given up).

        Runs on the collector's loop, so it only stores: the check of what was
        fetched runs on the server's loop, when it is served.
        """
        if not done.cancelled() and done.exception() is None:
            self._kept = _Result(done.result(), time.monotonic())

    def _left_out(self, reason: str, detail: str) -> None:
        self._failures.labels(self.name, reason).inc()
        if self._log_throttle.note().log:
            _log.warning("async collector left out of the scrape", collector=self.name,
                         reason=reason, detail=" ".join(detail.split())[:300])  # fmt: skip

    async def _fetch(self) -> list[Metric]:
        result = self.collector.collect()
        if isinstance(result, AsyncIterable):  # ``async def collect`` with ``yield``
            return [family async for family in result]
        return list(await result)


def _invalid(families: list[Metric]) -> str | None:
    """What would make rendering these families fail, or None.

    A collector's output joins the render only once it passed: a label value
    that is not a string (say, NaN) or a value that is not a number would
    otherwise answer the whole scrape 500.
    """
    for family in families:
        if not isinstance(family, Metric) or not isinstance(family.name, str):
            return f"not a metric family: {family!r:.100}"
        for sample in family.samples:
            labels = sample.labels
            if not isinstance(labels, dict) or not all(
                isinstance(key, str) and isinstance(value, str) for key, value in labels.items()
            ):
                return f"{sample.name}: label names and values must be strings, not {labels!r:.100}"
            if isinstance(sample.value, bool) or not isinstance(sample.value, int | float):
                return f"{sample.name}: value must be a number, not {sample.value!r:.100}"
    return None


def _nothing_taken(name: str, kind: str) -> bool:
    return False


_proxies = PerRegistry(lambda registry: list[_Proxy]())
_lock = threading.Lock()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def register_async_collector(
    collector: AsyncCollector,
    registry: CollectorRegistry = REGISTRY,
    *,
    min_interval: float = 1.0,
) -> None:
    """Expose a collector whose ``collect()`` is a coroutine.

    Its ``collect()`` is awaited on this event loop (the one running now, or,
    registered before any runs, the loop of the first service started) before
    a scrape of ``registry``, within half the scrape's render timeout; scrapes
    within ``min_interval`` seconds of a fetch reuse it, and a scrape whose
    ``name[]`` leaves out every family it returned does not fetch. A
    ``collect()`` that raises, is late or returns what cannot be rendered
    leaves its families out of that scrape, counted in
    ``metrics_async_collector_failures_total{collector, reason}`` and logged;
    the rest of the scrape is served, and a late result is served by the next.

    Raises:
        ValueError: If this collector is registered already.

    Examples:
        class QueueDepth:
            async def collect(self):
                depth = await broker.queue_length("jobs")
                yield GaugeMetricFamily("jobs_queue_depth", "Jobs waiting.", value=depth)

        register_async_collector(QueueDepth())
    """
    with _lock:
        if any(proxy.collector is collector for proxy in _proxies(registry)):
            raise ValueError(f"async collector {type(collector).__name__} is already registered")
        proxy = _Proxy(collector, _running_loop(), registry, min_interval)
        registry.register(proxy)
        _proxies(registry).append(proxy)


def unregister_async_collector(
    collector: AsyncCollector, registry: CollectorRegistry = REGISTRY
) -> None:
    """Stop exposing a collector registered with ``register_async_collector``."""
    with _lock:
        proxies = _proxies(registry)
        for proxy in [p for p in proxies if p.collector is collector]:
            proxies.remove(proxy)
            registry.unregister(proxy)


def registered(registry: CollectorRegistry = REGISTRY) -> list[AsyncCollector]:
    """The async collectors registered on ``registry``, in order."""
    with _lock:
        return [proxy.collector for proxy in _proxies(registry)]


def adopt_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Give collectors registered before any loop ran this one (a service starting)."""
    with _lock:
        for proxies in _proxies.all():
            for proxy in proxies:
                if proxy.loop is None or proxy.loop.is_closed():
                    proxy.loop = loop


async def refresh(
    registry: CollectorRegistry,
    within: float,
    wanted: Callable[[str, str], bool] | None = None,
    taken: Callable[[str, str], bool] | None = None,
) -> None:
    """Ready every async collector of ``registry`` for a render, concurrently, in ``within`` s.

    One that raises, is late or has no loop is left out of this scrape, counted in
    ``metrics_async_collector_failures_total{collector, reason}`` and logged (once a
    minute): the rest of the scrape is served, as exporters do with a failed probe.
    ``wanted(name, type)`` (a ``name[]`` filter) skips collectors whose last
    families it leaves out; a family for which ``taken(name, type)`` (another
    collector's name) is left out, counted as ``reason="clash"``.
    """
    with _lock:
        proxies = [
            proxy for proxy in _proxies(registry) if wanted is None or not proxy.excluded_by(wanted)
        ]
    if proxies:
        prepared = await asyncio.gather(*(proxy.prepare(within) for proxy in proxies))
        seen: set[str] = set()  # in registration order: the first family of a name stays
        for proxy, families in zip(proxies, prepared, strict=True):
            proxy.publish(families, taken or _nothing_taken, seen)
