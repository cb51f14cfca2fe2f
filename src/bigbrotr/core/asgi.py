"""The metrics endpoint as an ASGI application, a second thin adapter over ``Site``.

``MetricsServer`` serves the endpoint on aiohttp; this module serves the same
``bigbrotr.core.exposition.Site`` to any ASGI server or framework (uvicorn,
hypercorn, Starlette, FastAPI). Its being a few dozen lines of translation is
the proof that the core is framework-neutral: negotiation, gzip, ``name[]``,
HEAD, 404/405, the in-flight limit, the render timeout, the 500/503 reasons,
and, when asked, the health routes, the status page, basic auth and the
configured headers all live in the core, and so do the renders, which run off
the event loop on a ``bigbrotr-render`` thread and are shared by concurrent
scrapes, exactly as under aiohttp. TLS is the ASGI server's own job.

Examples:
    # standalone: uvicorn 'module:app'
    app = make_asgi_app(path="/metrics")

    # a service's metrics, health and status page, behind basic auth:
    app = make_asgi_app(path="/metrics", service=fetcher, web_config_file="web.yml",
                        unprotected_paths={"/healthz", "/readyz"})

    # mounted, as with prometheus_client.make_asgi_app:
    api.mount("/metrics", make_asgi_app())
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, TypeAlias
from urllib.parse import parse_qsl

from prometheus_client import REGISTRY
from prometheus_client.registry import CollectorRegistry

from bigbrotr.core.exposition import Access, Endpoint, Request, Response, Site

if TYPE_CHECKING:
    from bigbrotr.core.base_service import BaseService
    from bigbrotr.core.service_group import ServiceGroup

__all__ = ["MetricsApp", "Receive", "Scope", "Send", "make_asgi_app"]

#: The connection scope an ASGI server passes in (read only here).
Scope: TypeAlias = Mapping[str, Any]
#: An event from the server (``http.request``, ``lifespan.startup``, ...).
Receive: TypeAlias = Callable[[], Awaitable[Mapping[str, Any]]]
#: Sends an event to the server. Typed as Starlette's and asgiref's are, so the
#: app type-checks wherever theirs do, without depending on either.
Send: TypeAlias = Callable[[MutableMapping[str, Any]], Awaitable[None]]

#: What the app adds to the metrics alone: nothing (prometheus_client's app adds nothing).
_PLAIN = Access()
#: Close code for a WebSocket refused before the handshake completed (policy violation).
_WEBSOCKET_REFUSED = 1008


class MetricsApp:
    """An ASGI 3 application serving one registry's metrics.

    Scope types:

    - ``http``: every request is answered by ``Site.respond``.
    - ``lifespan``: startup completes at once; shutdown stops the render
      thread. A framework that mounts this app does not forward its lifespan
      to it, so such a host may call ``close`` from its own shutdown (the
      thread is a daemon, so forgetting costs nothing at exit).
    - ``websocket``: refused: the connection is closed before it is accepted,
      which servers turn into an HTTP 403 for the handshake.
    - anything else: ``ValueError``, as the ASGI spec asks of an app for a
      protocol it does not speak.

    Build it with ``make_asgi_app``.
    """

    def __init__(self, endpoint: Endpoint, site: Site | None = None) -> None:
        self._endpoint = endpoint
        self._site = site or Site(endpoint, metrics_path=None, access=lambda: _PLAIN, server=None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection: a scrape, the lifespan, or a refusal (see the class)."""
        kind = scope["type"]
        if kind == "http":
            response = await self._site.respond(_request(scope))
            await _send_response(response, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": _WEBSOCKET_REFUSED})
        else:
            raise ValueError(
                f"the metrics app serves ASGI 'http' and 'lifespan' scopes, not {kind!r}"
            )

    def close(self) -> None:
        """Stop the render thread; a later scrape starts a new one.

        Lifespan shutdown calls this; call it yourself when the app is mounted
        in a framework that keeps the lifespan to itself.
        """
        self._endpoint.close()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


def make_asgi_app(
    registry: CollectorRegistry = REGISTRY,
    *,
    path: str | None = None,
    max_requests_in_flight: int = 10,
    render_timeout: float = 10.0,
    service: BaseService[Any] | ServiceGroup | None = None,
    web_config_file: str | os.PathLike[str] | None = None,
    unprotected_paths: Iterable[str] = (),
) -> MetricsApp:
    """An ASGI app exposing ``registry``, a drop-in for prometheus_client's.

    Without the last three options it serves the metrics only, as
    prometheus_client's app does; with them, what ``MetricsServer`` serves.

    Args:
        registry: The registry to expose; the endpoint's own
            ``metrics_handler_requests_total{code}`` and
            ``metrics_handler_requests_in_flight`` are registered in it.
        path: The only path served, compared with the full request path
            (``scope["path"]``, which includes any ``root_path``); other paths
            get 404. None (the default) serves every path, which is what a
            framework's ``mount("/metrics", ...)`` needs.
        max_requests_in_flight: Scrapes served at once; more get 503.
        render_timeout: Seconds a scrape waits for its render before 503.
        service: A ``BaseService`` (or a ``ServiceGroup`` of several) whose
            ``/healthz``, ``/livez``, ``/readyz``, status page (``/``) and
            ``/status.json`` are served too.
        web_config_file: An exporter-toolkit web config file: basic auth
            (checked with bcrypt off the event loop) and response headers. TLS
            is the ASGI server's job (``uvicorn --ssl-certfile``), so a file
            with ``tls_server_config`` is refused.
        unprotected_paths: Paths served without basic auth (health probes).

    Raises:
        ValueError: If ``registry`` already holds metrics with the handler
            metrics' names (registered by something else).
        ConfigFileError: If ``web_config_file`` is wrong, naming its key.
        FileNotFoundError: If ``web_config_file`` does not exist.
    """
    unprotected = frozenset(unprotected_paths)
    access = _PLAIN  # the metrics alone, as prometheus_client's app: no headers of ours
    if service is not None or unprotected or web_config_file is not None:
        # imported here: the plain app needs neither pydantic nor bcrypt
        from bigbrotr.core.web_config import DEFAULT_HEADERS, load_web_config
        from bigbrotr.core.yaml import ConfigFileError

        access = Access(headers=DEFAULT_HEADERS, unprotected_paths=unprotected)
    if web_config_file is not None:
        web = load_web_config(os.fspath(web_config_file))
        if web.ssl_context is not None:
            raise ConfigFileError(
                f"{os.fspath(web_config_file)}: field 'tls_server_config': TLS is the ASGI "
                "server's job (uvicorn --ssl-certfile/--ssl-keyfile); remove it here"
            )
        access = Access(web.auth, web.headers, unprotected)
    endpoint = Endpoint(
        registry,
        path=path,
        max_requests_in_flight=max_requests_in_flight,
        render_timeout=render_timeout,
    )
    site = Site(
        endpoint,
        metrics_path=path,
        health=service.health if service is not None else None,
        status=service.status if service is not None else None,
        access=lambda: access,
        server=None,  # the ASGI server's own
    )
    return MetricsApp(endpoint, site)


def _request(scope: Scope) -> Request:
    """The core's request for an ASGI ``http`` scope; header bytes are latin-1 by HTTP."""
    headers = tuple(
        (name.decode("latin-1"), value.decode("latin-1")) for name, value in scope["headers"]
    )
    query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
    client = scope.get("client") or ("",)
    return Request(
        scope["method"],
        scope["path"],
        headers,
        tuple(query),
        scope.get("root_path", ""),
        str(client[0]),
    )


async def _send_response(response: Response, send: Send) -> None:
    """Send ``response`` whole; the core leaves the body of any answer to HEAD empty."""
    headers = [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in response.headers.items()
    ]
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})
