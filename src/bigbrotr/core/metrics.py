"""Prometheus metrics collection and HTTP exposition.

Defines module-level metric objects (singletons, thread-safe) that are shared
across all services. ``BaseService.run_forever()`` automatically records cycle
counts, durations, and failure streaks. Services add custom metrics through
``set_gauge()`` and ``inc_counter()`` on the base class, and values fetched at
scrape time through ``register_async_collector()`` (a collector whose
``collect()`` is a coroutine).

The ``MetricsServer`` provides an async HTTP endpoint (via aiohttp) for
Prometheus scraping. Configuration is handled through ``MetricsConfig``, which
can be embedded in any service's YAML configuration via ``BaseServiceConfig``.

Attributes:
    SERVICE_INFO: Static metadata set once at startup.
    SERVICE_GAUGE: Point-in-time values (current state).
    SERVICE_COUNTER: Cumulative totals (monotonically increasing).
    CYCLE_DURATION_SECONDS: Histogram for latency percentiles (p50/p95/p99).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.metrics_core import InfoMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry

from bigbrotr.core.async_collectors import register_async_collector, unregister_async_collector
from bigbrotr.core.metrics_config import MIN_RENDER_TIMEOUT, MetricsConfig, PushgatewayConfig

if TYPE_CHECKING:
    from bigbrotr.core.server import MetricsServer

__all__ = [
    "CYCLE_DURATION_SECONDS",
    "EVENT_LOOP_LAG_SECONDS",
    "MIN_RENDER_TIMEOUT",
    "OPERATION_DURATION_SECONDS",
    "SERVICE_COUNTER",
    "SERVICE_GAUGE",
    "SERVICE_INFO",
    "SERVICE_NAME_OVERFLOW",
    "MetricsConfig",
    "MetricsServer",
    "PushgatewayConfig",
    "ServiceInfo",
    "register_async_collector",
    "start_metrics_server",
    "unregister_async_collector",
]


class ServiceInfo:
    """``service_info``: prometheus_client's ``Info`` API, one series per service.

    A process runs one service or several; ``info({"service": name, ...})``
    sets that service's series and leaves the others', where an ``Info``
    would keep only the last call's (a dashboard's ``$service`` list would
    lose every service but one).
    """

    def __init__(self, name: str, documentation: str, registry: CollectorRegistry | None) -> None:
        self._name, self._documentation = name, documentation
        self._infos: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()
        if registry is not None:
            registry.register(self)

    def info(self, values: dict[str, str]) -> None:
        """Set the series of ``values["service"]`` (every value a string, as ``Info``'s)."""
        if not all(isinstance(value, str) for value in values.values()):
            raise ValueError(f"info values must be strings: {values!r}")
        with self._lock:
            self._infos[values.get("service", "")] = dict(values)

    def remove(self, service: str) -> None:
        """Drop the series of ``service`` (a service retired); others stay."""
        with self._lock:
            self._infos.pop(service, None)

    def describe(self) -> list[Metric]:
        """The family, empty (what the registry checks names against)."""
        return [InfoMetricFamily(self._name, self._documentation)]

    def collect(self) -> Iterator[Metric]:
        """One ``<name>_info`` sample per service."""
        family = InfoMetricFamily(self._name, self._documentation, labels=())
        with self._lock:
            infos = list(self._infos.values())
        for values in infos:
            family.add_metric([], values)
        yield family


SERVICE_INFO = ServiceInfo("service", "Static service metadata, set once at start.", REGISTRY)
SERVICE_GAUGE = Gauge(
    "service_gauge", "Point-in-time service values, by name.", ["service", "name"]
)
SERVICE_COUNTER = Counter(
    "service_counter", "Cumulative service totals, by name.", ["service", "name"]
)
SERVICE_NAME_OVERFLOW = Counter(
    "service_name_overflow_updates",
    "Updates folded into name=__overflow__ because metrics.max_names was reached.",
    ["service", "family"],
)
EVENT_LOOP_LAG_SECONDS = Histogram(
    "event_loop_lag_seconds",
    "How late the service's event loop runs a callback, measured from another thread.",
    ["service"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
CYCLE_DURATION_SECONDS = Histogram(
    "cycle_duration_seconds",
    "Duration of successful service cycles in seconds.",
    ["service"],
    # From a few milliseconds (fast cycles must not all land in one bucket) to an hour.
    buckets=(
        *(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5),
        *(1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
    ),
)

OPERATION_DURATION_SECONDS = Histogram(
    "service_operation_duration_seconds",
    "Time spent in named operations of a service (BaseService.timed), failed or not.",
    ["service", "operation"],
    buckets=(
        *(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5),
        *(1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
    ),
)


async def start_metrics_server(
    config: MetricsConfig | None = None, registry: CollectorRegistry = REGISTRY
) -> MetricsServer:
    """Create and start a metrics server in one call.

    Args:
        config: Endpoint configuration; defaults to ``MetricsConfig()``.
        registry: The registry to serve.

    Returns:
        A running ``MetricsServer`` (a no-op one when metrics are disabled).
        The caller should call ``stop()`` during shutdown to release the port.
    """
    from bigbrotr.core.server import MetricsServer  # lazily, see __getattr__

    server = MetricsServer(config or MetricsConfig(), registry)
    await server.start()
    return server


def __getattr__(name: str) -> object:
    """``MetricsServer`` lives in ``bigbrotr.core.server``; imported on first use.

    The seed documents it here. Importing it lazily keeps aiohttp out of
    processes that only record metrics (and avoids an import cycle).
    """
    if name == "MetricsServer":
        from bigbrotr.core.server import MetricsServer

        return MetricsServer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
