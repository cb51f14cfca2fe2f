"""Prometheus metrics collection and HTTP exposition.

Defines module-level metric objects (singletons, thread-safe) that are shared
across all services. ``BaseService.run_forever()`` automatically records cycle
counts, durations, and failure streaks. Services add custom metrics through
``set_gauge()`` and ``inc_counter()`` on the base class.

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

import asyncio
import weakref
from typing import Annotated, ClassVar

from aiohttp import web
from prometheus_client import REGISTRY, Counter, Gauge, Histogram, Info
from prometheus_client.registry import CollectorRegistry
from pydantic import BaseModel, ConfigDict, Field, field_validator

from bigbrotr.core.coalescer import Coalescer, DaemonThreadExecutor
from bigbrotr.core.exposition import Rendered, ScrapeRequest, bake, gzip_accepted, scrape_request
from bigbrotr.core.logger import get_logger

__all__ = [
    "CYCLE_DURATION_SECONDS",
    "SERVICE_COUNTER",
    "SERVICE_GAUGE",
    "SERVICE_INFO",
    "MetricsConfig",
    "MetricsServer",
    "start_metrics_server",
]

SERVICE_INFO = Info("service", "Static service metadata, set once at start.")
SERVICE_GAUGE = Gauge(
    "service_gauge", "Point-in-time service values, by name.", ["service", "name"]
)
SERVICE_COUNTER = Counter(
    "service_counter", "Cumulative service totals, by name.", ["service", "name"]
)
CYCLE_DURATION_SECONDS = Histogram(
    "cycle_duration_seconds",
    "Duration of successful service cycles in seconds.",
    ["service"],
    buckets=(1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)


class MetricsConfig(BaseModel):
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
        render_timeout: Seconds a scrape waits for its render before 503.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    port: int = 8000
    host: Annotated[str, Field(min_length=1)] = "127.0.0.1"
    path: str = "/metrics"
    max_requests_in_flight: int = Field(default=10, ge=1, le=10_000)
    render_timeout: float = Field(default=10.0, gt=0, le=600)

    @field_validator("port")
    @classmethod
    def _check_port(cls, port: int) -> int:
        if port != 0 and not 1024 <= port <= 65535:
            raise ValueError("port must be 0 (any free port) or between 1024 and 65535")
        return port

    @field_validator("path")
    @classmethod
    def _check_path(cls, path: str) -> str:
        if not path.startswith("/"):
            raise ValueError("path must start with '/'")
        return path


_log = get_logger(__name__)
_MAX_REMEMBERED_ERRORS = 100


class _HandlerMetrics:
    """The endpoint's own metrics, as Go's promhttp exports them, one set per registry."""

    _by_registry: ClassVar[weakref.WeakKeyDictionary[CollectorRegistry, _HandlerMetrics]] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, registry: CollectorRegistry) -> None:
        requests = Counter(
            "metrics_handler_requests",
            "Scrapes of the metrics endpoint, by HTTP status code.",
            ["code"],
            registry=registry,
        )
        #: The only codes the handler answers with, each exported at 0 from the start.
        self.responses = {code: requests.labels(str(code)) for code in (200, 500, 503)}
        self.in_flight = Gauge(
            "metrics_handler_requests_in_flight",
            "Scrapes of the metrics endpoint being served now.",
            registry=registry,
        )

    @classmethod
    def of(cls, registry: CollectorRegistry) -> _HandlerMetrics:
        """The registry's handler metrics, registered on first use."""
        metrics = cls._by_registry.get(registry)
        if metrics is None:
            metrics = cls._by_registry[registry] = cls(registry)
        return metrics


class MetricsServer:
    """Async HTTP server exposing a Prometheus-compatible metrics endpoint.

    Built on aiohttp so it shares the service's event loop, but the loop never
    renders: bodies are rendered (and gzipped) in a worker thread, and
    concurrent scrapes of one format share a render (see ``Coalescer``). The
    format follows ``Accept`` (text 0.0.4 or OpenMetrics 1.0.0), ``name[]``
    query parameters select families, and the endpoint's own metrics are
    ``metrics_handler_requests_total{code}`` and
    ``metrics_handler_requests_in_flight``.

    The endpoint path is configurable via ``MetricsConfig.path``; GET and HEAD
    are served there, other methods get 405 and other paths 404.

    Examples:
        server = MetricsServer(MetricsConfig(enabled=True, port=8001))
        await server.start()
        # ... service runs ...
        await server.stop()
    """

    def __init__(self, config: MetricsConfig, registry: CollectorRegistry = REGISTRY) -> None:
        self._config = config
        self._registry = registry
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._executor: DaemonThreadExecutor | None = None
        self._coalescer: Coalescer[ScrapeRequest, bool, Rendered] | None = None
        self._handler_metrics: _HandlerMetrics | None = None
        self._in_flight = 0
        self._errors_seen: set[str] = set()

    @property
    def port(self) -> int | None:
        """The bound TCP port while running (resolves port 0), else None."""
        return self._port

    @property
    def url(self) -> str | None:
        """The full scrape URL while running, else None."""
        if self._port is None:
            return None
        host = self._config.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self._port}{self._config.path}"

    async def start(self) -> None:
        """Start listening for Prometheus scrape requests.

        Returns immediately (no-op) if metrics are disabled or the server is
        already running.

        Raises:
            OSError: If binding fails (for example, the port is in use). The
                message names host:port, and nothing is left running.
        """
        if not self._config.enabled or self._runner is not None:
            return
        handler_metrics = _HandlerMetrics.of(self._registry)  # before binding: it may raise
        app = web.Application()
        app.router.add_get(self._config.path, self._handle)
        # shutdown_timeout: stop() waits this long for scrapes in flight, not aiohttp's 60 s.
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        host, port = self._config.host, self._config.port
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:
            await runner.cleanup()
            reason = exc.strerror or str(exc)
            raise OSError(exc.errno, f"cannot serve metrics on {host}:{port}: {reason}") from exc
        self._handler_metrics = handler_metrics
        self._executor = DaemonThreadExecutor("bigbrotr-render")
        self._coalescer = Coalescer(
            lambda request, gzip: bake(self._registry, request, True in gzip), self._executor
        )
        self._runner = runner
        self._port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        """Stop the HTTP server and release the port.

        Idempotent: safe to call if the server was never started or has already
        been stopped.
        """
        runner, self._runner, self._port = self._runner, None, None
        if runner is not None:
            await runner.cleanup()
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    async def _handle(self, request: web.Request) -> web.Response:
        assert self._coalescer is not None
        assert self._handler_metrics is not None
        in_flight = self._handler_metrics.in_flight
        config = self._config
        if self._in_flight >= config.max_requests_in_flight:
            limit = config.max_requests_in_flight
            return self._respond(
                503, f"too many concurrent scrapes (max_requests_in_flight={limit})"
            )
        scrape = scrape_request(request.headers.get("Accept"), request.query.getall("name[]", ()))
        gzip_wanted = gzip_accepted(request.headers.get("Accept-Encoding"))
        self._in_flight += 1
        in_flight.inc()
        try:
            rendered = await asyncio.wait_for(
                self._coalescer.get(scrape, gzip_wanted), config.render_timeout
            )
        except TimeoutError:
            return self._respond(
                503, f"rendering took longer than render_timeout={config.render_timeout}s"
            )
        except Exception as exc:
            reason = " ".join(f"collecting metrics failed: {type(exc).__name__}: {exc}".split())
            if reason not in self._errors_seen and len(self._errors_seen) < _MAX_REMEMBERED_ERRORS:
                self._errors_seen.add(reason)
                _log.error("scrape failed", reason=reason, exc_info=exc)
            return self._respond(500, reason)
        finally:
            self._in_flight -= 1
            in_flight.dec()
        body, headers = rendered.response(gzip_wanted)
        return self._respond(200, body=body, headers=headers)

    def _respond(
        self,
        status: int,
        reason: str = "",
        body: bytes = b"",
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        assert self._handler_metrics is not None
        self._handler_metrics.responses[status].inc()
        if status != 200:
            return web.Response(status=status, text=reason + "\n")
        return web.Response(body=body, headers=headers)


async def start_metrics_server(config: MetricsConfig | None = None) -> MetricsServer:
    """Create and start a metrics server in one call.

    Args:
        config: Endpoint configuration; defaults to ``MetricsConfig()``.

    Returns:
        A running ``MetricsServer`` (a no-op one when metrics are disabled).
        The caller should call ``stop()`` during shutdown to release the port.
    """
    server = MetricsServer(config or MetricsConfig())
    await server.start()
    return server
