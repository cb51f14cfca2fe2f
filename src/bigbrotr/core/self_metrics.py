"""The endpoint's own metrics, all in one place: one bundle per registry.

What the endpoint reports about itself, as Go's promhttp does: scrapes by
status code and in flight (every adapter), connections the aiohttp server
closed and malformed requests (that server only), and async collectors left
out of a scrape (when a registry has one). A registry refuses a name twice, so
each group is registered once per registry, the first time a part of bigbrotr
needs it, and shared by every user after: a registry only exports the groups
of what serves it.
"""

from __future__ import annotations

import threading
from typing import TypeVar

from prometheus_client import Counter, Gauge
from prometheus_client.registry import CollectorRegistry

from bigbrotr.core.per_registry import PerRegistry

__all__ = ["AsyncCollectorMetrics", "ConnectionMetrics", "RequestMetrics", "SelfMetrics", "of"]


class RequestMetrics:
    """Scrapes of the metrics endpoint: answered, by code, and in flight."""

    def __init__(self, registry: CollectorRegistry) -> None:
        requests = Counter(
            "metrics_handler_requests",
            "Scrapes of the metrics endpoint, by HTTP status code.",
            ["code"],
            registry=registry,
        )
        #: The only codes a scrape is answered with, each exported at 0 from the start.
        self.responses = {code: requests.labels(str(code)) for code in (200, 500, 503)}
        self.in_flight = Gauge(
            "metrics_handler_requests_in_flight",
            "Scrapes of the metrics endpoint being served now.",
            registry=registry,
        )


class ConnectionMetrics:
    """The aiohttp server's connection-level counters."""

    def __init__(self, registry: CollectorRegistry) -> None:
        closed = Counter(
            "metrics_handler_connections_closed",
            "Connections the metrics server closed itself, by reason.",
            ["reason"],
            registry=registry,
        )
        self.over_limit = closed.labels("max_connections")
        self.idle = closed.labels("idle_timeout")
        self.client_errors = Counter(
            "metrics_handler_client_errors",
            "Malformed requests and failed accepts on the metrics server.",
            registry=registry,
        )


class AsyncCollectorMetrics:
    """How often an async collector was left out of a scrape, by collector and reason."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.failures = Counter(
            "metrics_async_collector_failures",
            "Scrapes that went without an async collector's families, by reason "
            "(error, timeout, no_loop).",
            ["collector", "reason"],
            registry=registry,
        )


G = TypeVar("G", RequestMetrics, ConnectionMetrics, AsyncCollectorMetrics)


class SelfMetrics:
    """One registry's bundle; each group is registered on first use."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry
        self._groups: dict[type, object] = {}
        self._lock = threading.Lock()

    def _group(self, kind: type[G]) -> G:
        with self._lock:
            group = self._groups.get(kind)
            if group is None:
                group = self._groups[kind] = kind(self._registry)
            assert isinstance(group, kind)
            return group

    @property
    def requests(self) -> RequestMetrics:
        """Scrapes answered and in flight."""
        return self._group(RequestMetrics)

    @property
    def connections(self) -> ConnectionMetrics:
        """Connections closed and client errors (the aiohttp server)."""
        return self._group(ConnectionMetrics)

    @property
    def async_collectors(self) -> AsyncCollectorMetrics:
        """Async collectors left out of a scrape."""
        return self._group(AsyncCollectorMetrics)


#: The bundle of a registry, made the first time it is asked for.
of = PerRegistry(SelfMetrics)
