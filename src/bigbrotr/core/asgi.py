"""The metrics endpoint as an ASGI application, a second thin adapter over ``Endpoint``.

``MetricsServer`` serves the endpoint on aiohttp; this module serves the same
``bigbrotr.core.exposition.Endpoint`` to any ASGI server or framework
(uvicorn, hypercorn, Starlette, FastAPI). Its being a few dozen lines of
translation is the proof that the core is framework-neutral: negotiation,
gzip, ``name[]``, HEAD, 404/405, the in-flight limit, the render timeout and
the 500/503 reasons all live in the core, and so do the renders, which run
off the event loop on a ``bigbrotr-render`` thread and are shared by
concurrent scrapes, exactly as under aiohttp.

Examples:
    # standalone: uvicorn 'module:app'
    app = make_asgi_app(path="/metrics")

    # mounted, as with prometheus_client.make_asgi_app:
    api.mount("/metrics", make_asgi_app())
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any, TypeAlias
from urllib.parse import parse_qsl

from prometheus_client import REGISTRY
from prometheus_client.registry import CollectorRegistry

from bigbrotr.core.exposition import Endpoint, Request, Response

__all__ = ["MetricsApp", "Receive", "Scope", "Send", "make_asgi_app"]

#: The connection scope an ASGI server passes in (read only here).
Scope: TypeAlias = Mapping[str, Any]
#: An event from the server (``http.request``, ``lifespan.startup``, ...).
Receive: TypeAlias = Callable[[], Awaitable[Mapping[str, Any]]]
#: Sends an event to the server. Typed as Starlette's and asgiref's are, so the
#: app type-checks wherever theirs do, without depending on either.
Send: TypeAlias = Callable[[MutableMapping[str, Any]], Awaitable[None]]

#: Close code for a WebSocket refused before the handshake completed (policy violation).
_WEBSOCKET_REFUSED = 1008


class MetricsApp:
    """An ASGI 3 application serving one registry's metrics.

    Scope types:

    - ``http``: every request is answered by ``Endpoint.respond``.
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

    def __init__(self, endpoint: Endpoint) -> None:
        self._endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection: a scrape, the lifespan, or a refusal (see the class)."""
        kind = scope["type"]
        if kind == "http":
            response = await self._endpoint.respond(_request(scope))
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
) -> MetricsApp:
    """An ASGI app exposing ``registry``, a drop-in for prometheus_client's.

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

    Raises:
        ValueError: If ``registry`` already holds metrics with the handler
            metrics' names (registered by something else).
    """
    return MetricsApp(
        Endpoint(
            registry,
            path=path,
            max_requests_in_flight=max_requests_in_flight,
            render_timeout=render_timeout,
        )
    )


def _request(scope: Scope) -> Request:
    """The core's request for an ASGI ``http`` scope; header bytes are latin-1 by HTTP."""
    headers = tuple(
        (name.decode("latin-1"), value.decode("latin-1")) for name, value in scope["headers"]
    )
    query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
    return Request(scope["method"], scope["path"], headers, tuple(query))


async def _send_response(response: Response, send: Send) -> None:
    """Send ``response`` whole; the core leaves the body of any answer to HEAD empty."""
    headers = [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in response.headers.items()
    ]
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})
