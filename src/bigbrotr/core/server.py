"""``MetricsServer``: the metrics endpoint on aiohttp, on a thread and loop of its own.

Every request goes to ``bigbrotr.core.exposition.Site``, which holds the
whole policy (auth, health, status, negotiation, gzip, 404/405, limits, the
500 and 503 reasons) and renders off the event loop. This module binds the
socket and translates aiohttp's request and response, and, with
``bigbrotr.core._connections``, it keeps hostile or broken clients from
costing the service anything:

- The server runs its own event loop in its own thread, so a scrape flood or
  a slow client is never work on the service's loop (which neither renders
  nor serves).
- At most ``max_connections`` connections are open; more are closed at once.
- A connection that sends nothing for ``idle_timeout`` seconds (an idle
  keep-alive, or a request never finished: slowloris) is closed.
- Malformed requests and failed accepts are counted and logged in one line at
  most once a minute, never as tracebacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import ssl
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from dataclasses import replace
from typing import Any

from aiohttp import web
from prometheus_client import REGISTRY
from prometheus_client.registry import CollectorRegistry

from bigbrotr.core import self_metrics
from bigbrotr.core._connections import Connections, Guarded, client_error_log
from bigbrotr.core._tls_sniff import HTTPSOnly
from bigbrotr.core.exposition import SERVER, Access, Endpoint, Healths, Request, Site, Statuses
from bigbrotr.core.logger import get_logger
from bigbrotr.core.metrics_config import MetricsConfig
from bigbrotr.core.web_config import WebConfig, load_web_config
from bigbrotr.core.yaml import ConfigFileError

__all__ = ["MetricsServer"]

_log = get_logger(__name__)


def _log_failure(done: Future[object]) -> None:
    """Log what failed in work handed to the server's thread (nobody awaits it)."""
    if not done.cancelled() and (error := done.exception()) is not None:
        _log.error("work on the metrics server's thread failed", exc_info=error)


class _ServerThread:
    """An aiohttp server on its own event loop in a daemon thread."""

    def __init__(
        self,
        config: MetricsConfig,
        endpoint: Endpoint,
        metrics: self_metrics.ConnectionMetrics,
        web: WebConfig,
        health: Callable[[], Healths] | None,
        status: Callable[[], Statuses] | None,
    ) -> None:
        self.bound: Future[int] = Future()
        self.done: Future[None] = Future()
        self._config = config
        self._metrics = metrics
        self.web = web
        self._ticket = 0  # the reload in use (see ``reload``)
        self._site = Site(
            endpoint,
            metrics_path=config.path,
            health=health,
            status=status,
            access=lambda: Access(self.web.auth, self.web.headers, config.unprotected_paths),
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._errors = client_error_log(metrics.client_errors)
        threading.Thread(target=self._main, name="bigbrotr-http", daemon=True).start()

    def reload(self, new: WebConfig, ticket: int) -> Future[bool]:
        """Switch to a re-read web config, on the server's own loop (between handshakes).

        Reloads apply in the order their files were read (``ticket``): one read
        earlier than the config in use is dropped (False), so the last
        signal's file wins, certificates included, however long each read took.
        """
        done: Future[bool] = Future()

        def switch() -> None:
            if ticket < self._ticket:
                done.set_result(False)
                return
            try:
                live = self.web.ssl_context
                if live is not None:
                    new.rotate_into(live)
                self.web = replace(new.remembering(self.web), ssl_context=live)
                self._ticket = ticket
                done.set_result(True)
            except Exception as exc:  # handed to the caller, which logs it
                done.set_exception(exc)

        assert self._loop is not None
        self._loop.call_soon_threadsafe(switch)
        return done

    def submit(self, work: Coroutine[Any, Any, object]) -> None:
        """Run ``work`` on the server's own loop (from any thread, a signal handler too)."""
        loop = self._loop
        if loop is None:
            work.close()
            return
        with contextlib.suppress(RuntimeError):  # its loop already ended
            done = asyncio.run_coroutine_threadsafe(work, loop)
            done.add_done_callback(_log_failure)

    def stop(self) -> None:
        """Ask the server to close (from any thread); ``done`` completes when it has."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # its loop already ended
                loop.call_soon_threadsafe(stop.set)

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # handed to whoever waits
            if not self.bound.done():
                self.bound.set_exception(exc)
        finally:
            if not self.done.done():
                self.done.set_result(None)

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop, self._stop = loop, asyncio.Event()
        loop.set_exception_handler(self._loop_error)
        config = self._config
        site = self._site

        thread = self

        class OurRequest(web.BaseRequest):
            """aiohttp's request; every answer, aiohttp's own errors too, carries our headers."""

            async def _prepare_hook(self, response: web.StreamResponse) -> None:
                # aiohttp's 400 for a malformed request would name aiohttp and its version.
                for name, value in thread.web.headers.items():
                    response.headers.setdefault(name, value)
                response.headers["Server"] = SERVER
                await super()._prepare_hook(response)

        def request(message: Any, payload: Any, protocol: Any, writer: Any, task: Any) -> Any:
            return OurRequest(message, payload, protocol, writer, task, loop)

        async def handle(request: web.BaseRequest) -> web.Response:
            response = await site.respond(
                Request(
                    request.method,
                    request.path,
                    tuple(request.headers.items()),
                    tuple(request.query.items()),
                    client=request.remote or "",
                )
            )
            return web.Response(
                status=response.status, headers=response.headers, body=response.body
            )

        protocols = web.Server(
            handle,
            request_factory=request,
            access_log=None,
            logger=self._errors,
            # Idle connections are ours to close (and count); aiohttp's timer is a backstop.
            keepalive_timeout=config.idle_timeout * 2,
            # No route reads a body: never inflate one (a gzip bomb costs nothing).
            auto_decompress=False,
            # A client gone is work dropped: a password check it waited for frees its place.
            handler_cancellation=True,
        )
        # shutdown_timeout: stop() waits this long for scrapes in flight, not aiohttp's 60 s.
        runner = web.ServerRunner(protocols, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        connections = Connections(config, self._metrics)
        tls = self.web.ssl_context

        def connection() -> asyncio.Protocol:
            inner = protocols()
            # A plain listener: HTTPSOnly does the TLS, so plain HTTP can get Go's 400.
            return Guarded(inner if tls is None else HTTPSOnly(inner, tls), connections)

        try:
            server = await loop.create_server(connection, config.host, config.port)
        except OSError as exc:
            await runner.cleanup()
            self.bound.set_exception(exc)
            return
        self.bound.set_result(int(server.sockets[0].getsockname()[1]))
        try:
            await self._stop.wait()
        finally:
            server.close()
            await runner.cleanup()

    def _loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """Failed accepts (EMFILE ...) go to the once-a-minute line; anything else is ours."""
        message = str(context.get("message", ""))
        if "accept" in message:  # asyncio: "socket.accept() out of system resource"
            error = context.get("exception")
            self._errors.warning(f"{message}: {error}" if error else message)
        else:
            loop.default_exception_handler(context)


class MetricsServer:
    """Async HTTP server exposing a Prometheus-compatible metrics endpoint.

    Built on aiohttp, on an event loop of its own in a daemon thread: the
    service's loop neither renders nor serves. Bodies are rendered (and
    gzipped) in a worker thread, and concurrent scrapes of one format share a
    render. The format follows ``Accept`` (text 0.0.4 or OpenMetrics 1.0.0),
    ``name[]`` query parameters select families, and the endpoint's own
    metrics are ``metrics_handler_requests_total{code}``,
    ``metrics_handler_requests_in_flight``,
    ``metrics_handler_connections_closed_total{reason}`` and
    ``metrics_handler_client_errors_total``.

    The endpoint path is configurable via ``MetricsConfig.path``; GET and HEAD
    are served there, other methods get 405 and other paths 404. Given a
    ``health`` source (``BaseService.health``), ``/healthz`` and ``/livez``
    (liveness) and ``/readyz`` (readiness) answer 200 or 503, with one line
    per check under ``?verbose``. Given a ``status`` source
    (``BaseService.status``), ``/`` is a status page for people and
    ``/status.json`` the same state for machines (unless ``path`` is ``/``:
    the scrape endpoint comes first).

    Examples:
        server = MetricsServer(MetricsConfig(enabled=True, port=8001))
        await server.start()
        # ... service runs ...
        await server.stop()
    """

    def __init__(
        self,
        config: MetricsConfig,
        registry: CollectorRegistry = REGISTRY,
        health: Callable[[], Healths] | None = None,
        status: Callable[[], Statuses] | None = None,
    ) -> None:
        self._config = config
        self._registry = registry
        self._health = health
        self._status = status
        self._reloads = itertools.count(1)  # next() is atomic: any thread may reload
        self._thread: _ServerThread | None = None
        self._endpoint: Endpoint | None = None
        self._port: int | None = None

    @property
    def port(self) -> int | None:
        """The bound TCP port while running (resolves port 0), else None."""
        return self._port

    @property
    def web_config(self) -> WebConfig | None:
        """The web config in use (the last reload's) while running, else None."""
        return self._thread.web if self._thread is not None else None

    @property
    def url(self) -> str | None:
        """The full scrape URL while running (``https://`` with TLS), else None."""
        if self._port is None:
            return None
        host = self._config.host
        if ":" in host:
            host = f"[{host}]"
        tls = self._thread is not None and self._thread.web.ssl_context is not None
        return f"{'https' if tls else 'http'}://{host}:{self._port}{self._config.path}"

    async def start(self) -> None:
        """Start listening for Prometheus scrape requests.

        Returns immediately (no-op) if metrics are disabled or the server is
        already running.

        Raises:
            OSError: If binding fails (for example, the port is in use). The
                message names host:port, and nothing is left running.
            ConfigFileError: If ``web_config_file`` is wrong, naming its key.
            FileNotFoundError: If ``web_config_file`` does not exist.
        """
        config = self._config
        if not config.enabled or self._thread is not None:
            return
        web_config = WebConfig()
        if config.web_config_file is not None:  # reads files and runs bcrypt: off the loop
            web_config = await asyncio.to_thread(load_web_config, config.web_config_file)
        endpoint = Endpoint(  # before binding: registering its metrics may raise
            self._registry,
            path=config.path,
            max_requests_in_flight=config.max_requests_in_flight,
            render_timeout=config.render_timeout,
        )
        thread = _ServerThread(
            config,
            endpoint,
            self_metrics.of(self._registry).connections,
            web_config,
            self._health,
            self._status,
        )
        try:
            port = await asyncio.wrap_future(thread.bound)
        except OSError as exc:
            await asyncio.wrap_future(thread.done)
            endpoint.close()
            reason = exc.strerror or str(exc)
            where = f"{config.host}:{config.port}"
            raise OSError(exc.errno, f"cannot serve metrics on {where}: {reason}") from exc
        self._thread, self._endpoint, self._port = thread, endpoint, port

    def request_reload(self) -> None:
        """``reload_web_config`` on the server's own thread; safe from any thread (SIGHUP).

        It does not wait for the service's event loop, so it works while a
        cycle blocks that loop.
        """
        thread = self._thread
        if thread is not None:
            thread.submit(self.reload_web_config())

    async def reload_web_config(self) -> bool:
        """Re-read ``web_config_file`` (SIGHUP): new certificates, users and headers.

        The file is checked whole before anything changes; a bad file, or one
        that turns TLS on or off (which needs a restart), keeps the running
        settings and logs one ERROR line.

        Returns:
            True if the new file is in use.
        """
        path, thread = self._config.web_config_file, self._thread
        if path is None or thread is None:
            return False
        ticket = next(self._reloads)  # taken before the read: reads may finish out of order
        try:
            new = await asyncio.to_thread(load_web_config, path)  # file reads
        except (ConfigFileError, OSError) as exc:
            _log.error("web config not reloaded, keeping the running one", reason=str(exc))
            return False
        if (new.ssl_context is None) != (thread.web.ssl_context is None):
            _log.error(
                "web config not reloaded, keeping the running one",
                reason=f"{path}: turning TLS on or off needs a restart",
            )
            return False
        try:
            applied = await asyncio.wrap_future(thread.reload(new, ticket))
        except (ConfigFileError, OSError, ssl.SSLError) as exc:
            _log.error("web config not reloaded, keeping the running one", reason=str(exc))
            return False
        if not applied:
            _log.info("web config reload dropped: a later one is in use", file=path)
            return False
        _log.info("web config reloaded", file=path)
        return True

    async def stop(self) -> None:
        """Stop the HTTP server and release the port.

        Idempotent: safe to call if the server was never started or has already
        been stopped.
        """
        thread, self._thread, self._port = self._thread, None, None
        if thread is not None:
            thread.stop()
            await asyncio.wrap_future(thread.done)
        endpoint, self._endpoint = self._endpoint, None
        if endpoint is not None:
            endpoint.close()
