"""Every route a bigbrotr endpoint serves, as one policy: a request in, a response out.

``Site.respond`` is what the aiohttp server and the ASGI app call for every
request. It decides basic auth (bcrypt off the event loop; ``unprotected_paths``
pass), answers ``/healthz``, ``/livez``, ``/readyz`` (``?verbose``), the status
page at ``/`` and ``/status.json`` from the service's snapshots, hands
everything else to the metrics ``Endpoint``, and adds the configured response
headers. The adapters only translate requests and responses, so both serve
the same bytes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from bigbrotr.core.exposition._endpoint import Endpoint
from bigbrotr.core.exposition._http import Request, Response, for_method
from bigbrotr.core.health import HealthSnapshot, Verdict, liveness, of_each, readiness
from bigbrotr.core.logger import get_logger
from bigbrotr.core.status import CONTENT_SECURITY_POLICY, StatusSnapshot, as_json, page

__all__ = [
    "MAX_PENDING_CHECKS",
    "MAX_PENDING_CHECKS_PER_CLIENT",
    "SERVER",
    "Access",
    "Authenticator",
    "Healths",
    "Site",
    "Statuses",
]

_log = get_logger(__name__)

#: The ``Server`` header: no versions for a scanner to match against advisories.
SERVER = "bigbrotr"
#: Health endpoints (Kubernetes' names) and the verdict each one gives.
_HEALTH: dict[str, Callable[[HealthSnapshot], Verdict]] = {
    "/healthz": liveness,
    "/livez": liveness,
    "/readyz": readiness,
}
_READS = ("GET", "HEAD")
#: What the health and status routes read: one service's snapshot, or each service's
#: of a process that runs several (by name; in order).
Healths = HealthSnapshot | Mapping[str, HealthSnapshot]
Statuses = StatusSnapshot | Sequence[StatusSnapshot]
#: The status page for people, and the same state for machines.
_STATUS_PAGE, _STATUS_JSON = "/", "/status.json"
_TEXT = "text/plain; charset=utf-8"
#: Password checks (bcrypt) running or waiting at once, in all and from one client
#: address; more are answered 503 at once.
MAX_PENDING_CHECKS = 8
MAX_PENDING_CHECKS_PER_CLIENT = 2


class Authenticator(Protocol):
    """Checks an ``Authorization`` header (``web_config.BasicAuth``)."""

    def known(self, header: str | None) -> bool | None:
        """Whether ``header`` passed or failed before (None: not yet); cheap, for the loop."""

    def check(self, header: str | None) -> bool:
        """Whether ``header`` passes; may block (bcrypt), so it runs in a thread."""


@dataclass(frozen=True)
class Access:
    """Who may read, and what every answer carries (from the exporter-toolkit file).

    Attributes:
        auth: The basic-auth check, or None for none.
        headers: Added to every response.
        unprotected_paths: Paths served without basic auth (health probes).
    """

    auth: Authenticator | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    unprotected_paths: frozenset[str] = frozenset()


def _answer(status: int, body: bytes, content_type: str, **headers: str) -> Response:
    return Response(
        status, {"Content-Type": content_type, "Content-Length": str(len(body)), **headers}, body
    )


def _text(status: int, text: str, **headers: str) -> Response:
    return _answer(status, text.encode(), _TEXT, **headers)


class Site:
    """The routes of one endpoint; see the module docstring.

    Args:
        endpoint: Serves the metrics path (and every path it is not told to skip).
        metrics_path: The metrics path, which comes first (a status page at
            ``/`` yields to metrics served at ``/``); None when the endpoint
            serves every path (an app mounted under a prefix).
        health: The service's health snapshot, for the health routes (each
            service's, by name, when a process runs several).
        status: The service's status snapshot, for the status page and JSON
            (each service's, when a process runs several).
        access: Basic auth, headers and unprotected paths; read per request,
            so a reload can swap it (a callable returning the current one).
        server: The ``Server`` header, or None to leave it to the web server
            (an ASGI server sets its own).
    """

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        metrics_path: str | None = "/metrics",
        health: Callable[[], Healths] | None = None,
        status: Callable[[], Statuses] | None = None,
        access: Callable[[], Access] = Access,  # no auth, no headers
        server: str | None = SERVER,
    ) -> None:
        self._endpoint = endpoint
        self._server = {"Server": server} if server is not None else {}
        self._metrics_path = metrics_path
        self._health = health
        self._status = status
        self._access = access
        #: Checks pending, by client address (read and written on the adapter's loop only).
        self._pending: collections.Counter[str] = collections.Counter()
        self._pool: ThreadPoolExecutor | None = None

    async def respond(self, request: Request) -> Response:
        """The whole answer to ``request``, headers included; HEAD gets no body."""
        return for_method(request, await self._respond(request))

    async def _respond(self, request: Request) -> Response:
        access = self._access()  # once per request: a reload swaps it
        allowed = await self._allowed(request, access)
        if allowed is None:
            return _text(
                503,
                "too many password checks pending; try again\n",
                **access.headers,
                **{"Retry-After": "1"},
                **self._server,
            )
        if not allowed:
            return _text(
                401,
                "unauthorized\n",
                **access.headers,
                **{"WWW-Authenticate": 'Basic realm="metrics", charset="UTF-8"'},
                **self._server,
            )
        try:
            own = self._own_page(request)
        except Exception:  # a bug of ours: logged, answered without a traceback
            _log.exception("answering a health or status request failed", path=request.path)
            own = _text(500, "internal error\n")
        if own is not None:
            # The page's own headers (its CSP, Allow) win over the configured ones.
            headers = {**access.headers, **own.headers, **self._server}
            return Response(own.status, headers, own.body)
        response = await self._endpoint.respond(request)
        headers = {**response.headers, **access.headers, **self._server}
        return Response(response.status, headers, response.body)

    async def _allowed(self, request: Request, access: Access) -> bool | None:
        """Whether the request may be answered; None when too many checks are pending.

        A check not remembered runs bcrypt (in a thread, never on the loop). At
        most ``MAX_PENDING_CHECKS`` run or wait at once, and at most
        ``MAX_PENDING_CHECKS_PER_CLIENT`` from one address: a flood of wrong
        passwords is answered 503 at once instead of queueing CPU-bound work
        without bound, and a flood from one address cannot take every place from
        another client.
        """
        auth = access.auth
        if auth is None or request.route in access.unprotected_paths:
            return True
        given = request.header("Authorization")
        if (verdict := auth.known(given)) is not None:
            return verdict
        pending, client = self._pending, request.client
        if pending.total() >= MAX_PENDING_CHECKS or (
            pending[client] >= MAX_PENDING_CHECKS_PER_CLIENT
        ):
            return None
        pending[client] += 1
        loop = asyncio.get_running_loop()

        def release() -> None:
            pending[client] -= 1
            if not pending[client]:
                del pending[client]

        def ended(_: object) -> None:  # bcrypt ended, or was dropped before it started
            with contextlib.suppress(RuntimeError):  # the loop already closed
                loop.call_soon_threadsafe(release)

        check = self._checks().submit(auth.check, given)
        check.add_done_callback(ended)
        try:
            return await asyncio.wrap_future(check)
        except asyncio.CancelledError:
            check.cancel()  # the client left: a check not started yet is dropped
            raise

    def _checks(self) -> ThreadPoolExecutor:
        """The threads password checks run in: as many as cores, so 8 pending is 8 in all."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(os.cpu_count() or 1, "bigbrotr-password-check")
        return self._pool

    def _own_page(self, request: Request) -> Response | None:
        """Health and status answers, or None for the metrics endpoint to answer."""
        path = request.route
        if path == self._metrics_path:
            return None
        verdict = _HEALTH.get(path) if self._health is not None else None
        is_status = self._status is not None and path in (_STATUS_PAGE, _STATUS_JSON)
        if verdict is None and not is_status:
            return None
        if request.method not in _READS:
            return _text(405, "method not allowed\n", Allow="GET, HEAD")
        if verdict is not None and self._health is not None:
            healths = self._health()
            if isinstance(healths, HealthSnapshot):
                answer = verdict(healths)
            else:  # every service's checks, each named for its service
                answer = of_each({name: verdict(each) for name, each in healths.items()})
            verbose = any(name == "verbose" for name, _ in request.query)
            return _text(answer.status, answer.text(verbose))
        assert self._status is not None
        snapshot = self._status()
        if path == _STATUS_JSON:
            body = json.dumps(as_json(snapshot)).encode()
            return _answer(200, body, "application/json; charset=utf-8")
        return _answer(
            200,
            page(snapshot, metrics_path=self._metrics_path or "/metrics").encode(),
            "text/html; charset=utf-8",
            **{"Content-Security-Policy": CONTENT_SECURITY_POLICY},
        )
