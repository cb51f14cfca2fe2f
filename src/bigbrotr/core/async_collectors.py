"""Collectors whose ``collect()`` is a coroutine: values fetched at scrape time.

A queue length from a broker, a pool's state: values that must be fetched
with ``await`` when Prometheus asks. prometheus_client calls ``collect()``
synchronously, in the render thread, where nothing can be awaited. So each
async collector sits in the registry behind a proxy: before a render, the
endpoint calls ``refresh``, which runs every ``collect()`` on the event loop
the collector belongs to (the service's), under the render timeout; the
proxy then hands the families fetched to the render, off the loop, with the
rest. At most one ``collect()`` per collector is in flight: concurrent
scrapes wait for the same one.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable
from concurrent.futures import Future
from typing import Protocol

from prometheus_client import REGISTRY
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import CollectorRegistry

from bigbrotr.core.per_registry import PerRegistry

__all__ = [
    "AsyncCollector",
    "AsyncCollectorError",
    "adopt_loop",
    "refresh",
    "register_async_collector",
    "unregister_async_collector",
]


class AsyncCollector(Protocol):
    """What ``register_async_collector`` takes: an object with ``async def collect()``."""

    async def collect(self) -> Iterable[Metric]:
        """The metric families, fetched now."""
        ...


class AsyncCollectorError(Exception):
    """An async collector raised (or has no loop to run on); the scrape answers 500."""


class _Proxy:
    """Stands in the registry for one async collector, holding what it last fetched."""

    def __init__(self, collector: AsyncCollector, loop: asyncio.AbstractEventLoop | None) -> None:
        self.collector = collector
        self.loop = loop
        self._families: list[Metric] = []
        self._pending: Future[list[Metric]] | None = None
        self._lock = threading.Lock()

    def describe(self) -> list[Metric]:
        """Nothing: the registry must not call ``collect`` to learn the names."""
        return []

    def collect(self) -> list[Metric]:
        """The families the last refresh fetched (the render thread calls this)."""
        return self._families

    async def refresh(self) -> None:
        """Run ``collect()`` on the collector's loop; one run shared by concurrent callers."""
        with self._lock:
            pending = self._pending
            if pending is None or pending.done():
                loop = self.loop
                name = type(self.collector).__name__
                if loop is None or loop.is_closed():
                    raise AsyncCollectorError(
                        f"async collector {name}: no event loop to run it on "
                        "(register it from the service's loop, or start the service)"
                    )
                pending = self._pending = asyncio.run_coroutine_threadsafe(self._fetch(), loop)
        # Shielded: a scrape that gives up (timeout) leaves the run to the next scrape.
        self._families = await asyncio.shield(asyncio.wrap_future(pending))

    async def _fetch(self) -> list[Metric]:
        try:
            return list(await self.collector.collect())
        except Exception as exc:
            name = type(self.collector).__name__
            raise AsyncCollectorError(f"{name}: {type(exc).__name__}: {exc}") from exc


_proxies = PerRegistry(lambda registry: list[_Proxy]())
_lock = threading.Lock()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def register_async_collector(
    collector: AsyncCollector, registry: CollectorRegistry = REGISTRY
) -> None:
    """Expose a collector whose ``collect()`` is a coroutine.

    Its ``collect()`` is awaited on this event loop (the one running now, or,
    registered before any runs, the loop of the first service started) before
    each scrape of ``registry``, within the scrape's render timeout; a
    ``collect()`` that raises answers the scrape 500, one that takes too long
    503, as a synchronous collector's would.

    Examples:
        class QueueDepth:
            async def collect(self):
                depth = await broker.queue_length("jobs")
                yield GaugeMetricFamily("jobs_queue_depth", "Jobs waiting.", value=depth)

        register_async_collector(QueueDepth())
    """
    proxy = _Proxy(collector, _running_loop())
    with _lock:
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


def adopt_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Give collectors registered before any loop ran this one (a service starting)."""
    with _lock:
        for proxies in _proxies.all():
            for proxy in proxies:
                if proxy.loop is None or proxy.loop.is_closed():
                    proxy.loop = loop


async def refresh(registry: CollectorRegistry) -> None:
    """Fetch every async collector of ``registry`` now (concurrently).

    Raises:
        AsyncCollectorError: If one raised, or has no loop to run on.
    """
    with _lock:
        proxies = list(_proxies(registry))
    if proxies:
        await asyncio.gather(*(proxy.refresh() for proxy in proxies))
