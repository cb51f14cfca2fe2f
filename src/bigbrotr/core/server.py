"""``MetricsServer``: the metrics endpoint on aiohttp, a thin adapter over ``Endpoint``.

Every request goes to ``bigbrotr.core.exposition.Endpoint``, which holds the
whole policy (negotiation, gzip, 404/405, limits, the 500 and 503 reasons)
and renders off the event loop; this module only binds the socket and
translates aiohttp's request and response.
"""

from __future__ import annotations

from aiohttp import web
from prometheus_client import REGISTRY
from prometheus_client.registry import CollectorRegistry

from bigbrotr.core.exposition import Endpoint, Request
from bigbrotr.core.metrics import MetricsConfig

__all__ = ["MetricsServer"]


class MetricsServer:
    """Async HTTP server exposing a Prometheus-compatible metrics endpoint.

    Built on aiohttp so it shares the service's event loop, but the loop never
    renders: bodies are rendered (and gzipped) in a worker thread, and
    concurrent scrapes of one format share a render. The format follows
    ``Accept`` (text 0.0.4 or OpenMetrics 1.0.0), ``name[]`` query parameters
    select families, and the endpoint's own metrics are
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
        self._endpoint: Endpoint | None = None
        self._port: int | None = None

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
        config = self._config
        if not config.enabled or self._runner is not None:
            return
        endpoint = Endpoint(  # before binding: registering its metrics may raise
            self._registry,
            path=config.path,
            max_requests_in_flight=config.max_requests_in_flight,
            render_timeout=config.render_timeout,
        )

        async def handle(request: web.Request) -> web.Response:
            response = await endpoint.respond(
                Request(
                    request.method,
                    request.path,
                    tuple(request.headers.items()),
                    tuple(request.query.items()),
                )
            )
            return web.Response(
                status=response.status, headers=response.headers, body=response.body
            )

        app = web.Application()
        app.router.add_route("*", "/{path:.*}", handle)
        # shutdown_timeout: stop() waits this long for scrapes in flight, not aiohttp's 60 s.
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, config.host, config.port).start()
        except OSError as exc:
            await runner.cleanup()
            reason = exc.strerror or str(exc)
            where = f"{config.host}:{config.port}"
            raise OSError(exc.errno, f"cannot serve metrics on {where}: {reason}") from exc
        self._endpoint = endpoint
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
        endpoint, self._endpoint = self._endpoint, None
        if endpoint is not None:
            endpoint.close()
