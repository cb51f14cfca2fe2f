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

from typing import TYPE_CHECKING, Annotated

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, Info
from prometheus_client.registry import CollectorRegistry
from pydantic import Field, field_validator, model_validator

from bigbrotr.core.async_collectors import register_async_collector, unregister_async_collector
from bigbrotr.core.config import ConfigPath, Settings

if TYPE_CHECKING:
    from bigbrotr.core.server import MetricsServer

__all__ = [
    "CYCLE_DURATION_SECONDS",
    "EVENT_LOOP_LAG_SECONDS",
    "OPERATION_DURATION_SECONDS",
    "SERVICE_COUNTER",
    "SERVICE_GAUGE",
    "SERVICE_INFO",
    "SERVICE_NAME_OVERFLOW",
    "MetricsConfig",
    "MetricsServer",
    "PushgatewayConfig",
    "register_async_collector",
    "start_metrics_server",
    "unregister_async_collector",
]

SERVICE_INFO = Info("service", "Static service metadata, set once at start.")
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


#: No render of a real registry, with its thread hand-off, finishes sooner.
MIN_RENDER_TIMEOUT = 0.1


class PushgatewayConfig(Settings):
    """Where ``bigbrotr run --once`` pushes its metrics after the cycle.

    Attributes:
        url: The Pushgateway, ``http(s)://host:port``.
        job: The ``job`` grouping label.
        grouping_key: More grouping labels (values may hold ``/``).
        timeout: Seconds the push may take.
    """

    url: Annotated[str, Field(pattern=r"^https?://[^\s/]+(/\S*)?$")]
    job: Annotated[str, Field(min_length=1)]
    grouping_key: dict[str, str] = Field(default_factory=dict)
    timeout: float = Field(default=10.0, gt=0, le=600)


class MetricsConfig(Settings):
    """Configuration for the Prometheus metrics endpoint.

    Set ``host`` to ``"0.0.0.0"`` in container environments to allow external
    scraping. The endpoint is only started when ``enabled`` is True.

    Attributes:
        enabled: Whether to serve metrics at all.
        port: TCP port, 1024-65535, or 0 for any free port (read the bound one
            back from ``MetricsServer.port``).
        host: Interface to bind; loopback by default so nothing is exposed by
            accident.
        path: URL path of the endpoint.
        max_requests_in_flight: Concurrent scrapes served; more get 503, so a
            scrape storm cannot pile up work in the service.
        render_timeout: Seconds a scrape waits for its render before 503; at
            least 0.1, as a shorter one would answer every scrape 503.
        max_names: Distinct ``name`` values a service may use in
            ``service_gauge`` and in ``service_counter_total`` (each); updates to
            further names are folded into ``name="__overflow__"`` and counted in
            ``service_name_overflow_updates_total``.
        max_connections: Open connections to the endpoint; more are closed at
            once, so no client can exhaust the process's file descriptors.
        idle_timeout: Seconds a connection may send nothing (idle keep-alive,
            or a request never finished) before it is closed; longer than
            ``render_timeout``, so no scrape is cut while it waits.
        web_config_file: An exporter-toolkit web configuration file (TLS,
            basic auth, headers). Written in a YAML file (``load_config``), it
            is relative to that file, as the paths inside it are relative to
            it; given in Python, to the working directory.
        unprotected_paths: Paths served without basic auth (say, health
            probes for a kubelet); every other path needs it. Kept here, not
            in the web config file, so that file stays valid for promtool.
        pushgateway: Where ``run --once`` pushes its metrics, or None.
    """

    enabled: bool = False
    port: int = 8000
    host: Annotated[str, Field(min_length=1)] = "127.0.0.1"
    path: str = "/metrics"
    max_requests_in_flight: int = Field(default=10, ge=1, le=10_000)
    render_timeout: float = Field(default=10.0, le=600)
    max_names: int = Field(default=1000, ge=10, le=1_000_000)
    max_connections: int = Field(default=100, ge=1, le=100_000)
    idle_timeout: float = Field(default=15.0, gt=0, le=3600)
    web_config_file: ConfigPath | None = None
    unprotected_paths: frozenset[str] = frozenset()
    pushgateway: PushgatewayConfig | None = None

    @field_validator("port")
    @classmethod
    def _check_port(cls, port: int) -> int:
        if port != 0 and not 1024 <= port <= 65535:
            raise ValueError("port must be 0 (any free port) or between 1024 and 65535")
        return port

    @field_validator("render_timeout")
    @classmethod
    def _usable_render_timeout(cls, timeout: float) -> float:
        if not timeout >= MIN_RENDER_TIMEOUT:
            raise ValueError(
                f"render_timeout must be at least {MIN_RENDER_TIMEOUT} s "
                "(shorter would answer every scrape 503)"
            )
        return timeout

    @model_validator(mode="after")
    def _pushgateway_needs_metrics(self) -> MetricsConfig:
        if self.pushgateway is not None and not self.enabled:
            raise ValueError(
                "pushgateway needs enabled: true (it turns recording on; --once serves nothing)"
            )
        return self

    @model_validator(mode="after")
    def _idle_outlasts_render(self) -> MetricsConfig:
        if self.idle_timeout <= self.render_timeout:
            raise ValueError(
                f"idle_timeout ({self.idle_timeout}) must be longer than render_timeout "
                f"({self.render_timeout}), or a slow render would be cut off"
            )
        return self

    @field_validator("unprotected_paths")
    @classmethod
    def _check_unprotected(cls, paths: frozenset[str]) -> frozenset[str]:
        for path in paths:
            if not path.startswith("/"):
                raise ValueError(f"unprotected path {path!r} must start with '/'")
        return paths

    @field_validator("path")
    @classmethod
    def _check_path(cls, path: str) -> str:
        if not path.startswith("/"):
            raise ValueError("path must start with '/'")
        if "?" in path or "#" in path:
            raise ValueError("path must not contain '?' or '#' (no request could reach it)")
        return path


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
