"""The scrape policy as pure functions: a request in, a response (or a render to do) out.

Nothing here knows about a web framework or the event loop. ``route`` turns a
request into an immediate answer (404, 405) or a ``Scrape`` to render;
``answer`` turns a render's outcome into the response; the 503 and 500
reasons are built here too, and ``for_method`` drops the body of any answer
to HEAD. ``Endpoint`` adds the concurrency (off-loop,
coalesced renders, the in-flight limit, the timeout), and the aiohttp and
ASGI adapters only translate requests and responses.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

from prometheus_client import REGISTRY
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.registry import Collector

from bigbrotr.core.exposition._renderer import render

__all__ = [
    "CONTENT_TYPE_OPENMETRICS",
    "CONTENT_TYPE_TEXT",
    "Format",
    "RenderKey",
    "Rendered",
    "Request",
    "Response",
    "Scrape",
    "answer",
    "bake",
    "failure_reason",
    "for_method",
    "gzip_accepted",
    "negotiate",
    "respond",
    "route",
    "shutting_down",
    "timed_out",
    "too_many_in_flight",
    "too_many_renders",
]

CONTENT_TYPE_TEXT = "text/plain; version=0.0.4; charset=utf-8"
CONTENT_TYPE_OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
_CONTENT_TYPE_REASON = "text/plain; charset=utf-8"
#: Fastest zlib level: metrics text still shrinks ~10x, and scrapes stay cheap.
GZIP_LEVEL = 1
_ESCAPINGS = frozenset(
    (openmetrics.ALLOWUTF8, openmetrics.UNDERSCORES, openmetrics.DOTS, openmetrics.VALUES)
)
_METHODS = ("GET", "HEAD")


@dataclass(frozen=True)
class Request:
    """An HTTP request as the policy needs it; adapters build one from their framework's.

    Attributes:
        method: ``GET``, ``HEAD``, ...
        path: The decoded URL path, without the query.
        headers: Every header as (name, value), repeated names included.
        query: Every query parameter as (name, value), in order.
        root_path: The prefix a framework mounted the app under (ASGI's
            ``root_path``), part of ``path``.
        client: The client's address, for fairness between clients ("" unknown).
    """

    method: str
    path: str
    headers: Sequence[tuple[str, str]] = ()
    query: Sequence[tuple[str, str]] = ()
    root_path: str = ""
    client: str = ""

    @property
    def route(self) -> str:
        """The path within the app: ``path`` without ``root_path`` (``/healthz`` when mounted)."""
        if self.root_path and self.path.startswith(self.root_path):
            return self.path[len(self.root_path) :] or "/"
        return self.path

    def header(self, name: str) -> str | None:
        """A header's value; repeated headers are joined with ", " (RFC 9110, 5.3)."""
        name = name.lower()
        values = [value for key, value in self.headers if key.lower() == name]
        return ", ".join(values) if values else None


@dataclass(frozen=True)
class Response:
    """A complete HTTP response; for HEAD, the GET's headers and an empty body."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass(frozen=True)
class Format:
    """An exposition format the client asked for and we can write.

    Attributes:
        openmetrics: OpenMetrics 1.0.0 rather than the Prometheus text format.
        escaping: Name escaping scheme (``underscores`` unless negotiated).
        content_type: The ``Content-Type`` header value.
    """

    openmetrics: bool
    escaping: str
    content_type: str


TEXT_0_0_4 = Format(False, openmetrics.UNDERSCORES, CONTENT_TYPE_TEXT)


def _entries(header: str | None) -> Iterator[tuple[str, dict[str, str], float]]:
    """Each entry of an ``Accept``-style header: (lowercased name, parameters, q).

    Entries whose q is not a number are skipped, as if absent.
    """
    for entry in (header or "").split(","):
        name, *parts = entry.split(";")
        params = {}
        for part in parts:
            key, sep, value = part.partition("=")
            if sep:
                params[key.strip().lower()] = value.strip().strip('"')
        try:
            quality = float(params.get("q", "1"))
        except ValueError:
            continue
        yield name.strip().lower(), params, quality


def _format_for(media: str, params: dict[str, str]) -> Format | None:
    """The format one ``Accept`` entry selects, or None if we cannot write it."""
    escaping = params.get("escaping", openmetrics.UNDERSCORES)
    if escaping not in _ESCAPINGS:
        escaping = openmetrics.UNDERSCORES
    version = params.get("version")
    suffix = "" if escaping == openmetrics.UNDERSCORES else f"; escaping={escaping}"
    if media == "application/openmetrics-text" and version in (None, "1.0.0", "0.0.1"):
        return Format(True, escaping, CONTENT_TYPE_OPENMETRICS + suffix)
    if media == "text/plain" and version == "1.0.0":
        return Format(False, escaping, "text/plain; version=1.0.0; charset=utf-8" + suffix)
    if media in ("text/plain", "text/*", "*/*") and version in (None, "0.0.4"):
        return TEXT_0_0_4
    return None


def negotiate(accept: str | None) -> Format:
    """Choose the format for an ``Accept`` header, honouring q-values.

    OpenMetrics 1.0.0 (or 0.0.1, served as 1.0.0) and the text format (0.0.4,
    or 1.0.0 with ``escaping=``) are supported; protobuf and unknown types are
    skipped, so Prometheus' own header, which prefers OpenMetrics, gets it.
    With no header, nothing acceptable, or a malformed header: text 0.0.4.
    """
    best: tuple[float, Format] | None = None
    for media, params, quality in _entries(accept):
        chosen = _format_for(media, params)
        if chosen is not None and quality > 0 and (best is None or quality > best[0]):
            best = (quality, chosen)
    return best[1] if best else TEXT_0_0_4


def gzip_accepted(accept_encoding: str | None) -> bool:
    """Whether ``Accept-Encoding`` allows gzip with q > 0.

    An explicit ``gzip`` entry decides; otherwise ``*`` does.
    """
    qualities = {coding: quality for coding, _, quality in _entries(accept_encoding)}
    return qualities.get("gzip", qualities.get("*", 0.0)) > 0


@dataclass(frozen=True)
class RenderKey:
    """What shapes a response body; scrapes with equal keys can share one render.

    Attributes:
        format: The negotiated format.
        names: ``name[]`` filter, or None for every family.
    """

    format: Format
    names: frozenset[str] | None


@dataclass(frozen=True)
class Scrape:
    """A request that ``route`` accepted: what to render and whether to gzip it."""

    key: RenderKey
    gzip: bool


def _reason(status: int, reason: str, headers: Mapping[str, str] | None = None) -> Response:
    body = (reason + "\n").encode()
    all_headers = {"Content-Type": _CONTENT_TYPE_REASON, "Content-Length": str(len(body))}
    return Response(status, {**all_headers, **(headers or {})}, body)


def route(request: Request, path: str | None = "/metrics") -> Response | Scrape:
    """Answer what needs no render (404, 405), or say what to render.

    Args:
        request: The request.
        path: The endpoint's path; None serves every path (for an app mounted
            under a prefix by its framework).
    """
    if path is not None and request.path != path:
        return _reason(404, f"not found; metrics are at {path}")
    if request.method not in _METHODS:
        return _reason(405, "method not allowed; use GET or HEAD", {"Allow": "GET, HEAD"})
    names = frozenset(value for key, value in request.query if key == "name[]") or None
    key = RenderKey(negotiate(request.header("Accept")), names)
    return Scrape(key, gzip_accepted(request.header("Accept-Encoding")))


def for_method(request: Request, response: Response) -> Response:
    """The response as sent: for HEAD, the same headers (Content-Length too) and no body."""
    return replace(response, body=b"") if request.method == "HEAD" else response


def too_many_in_flight(limit: int) -> Response:
    """The 503 for a scrape over ``max_requests_in_flight``."""
    return _reason(503, f"too many concurrent scrapes (max_requests_in_flight={limit})")


def timed_out(timeout: float) -> Response:
    """The 503 for a render slower than ``render_timeout``."""
    return _reason(503, f"rendering took longer than render_timeout={timeout}s")


def too_many_renders(detail: str) -> Response:
    """The 503 when too many different renders wait (behind a hung collector, say)."""
    return _reason(503, f"too many different renders pending ({detail}); try again later")


def shutting_down() -> Response:
    """The 503 for a scrape whose render was cancelled because the endpoint closed."""
    return _reason(503, "the metrics endpoint is shutting down")


def failure_reason(error: BaseException) -> str:
    """The one-line reason for a collector's exception (a placeholder if its ``__str__`` raises)."""
    try:
        message = str(error)
    except Exception:
        message = f"<{type(error).__name__}.__str__ failed>"
    return " ".join(f"collecting metrics failed: {type(error).__name__}: {message}".split())


@dataclass(frozen=True)
class Rendered:
    """One render, in the encodings its scrapes asked for."""

    body: bytes
    gzipped: bytes | None
    content_type: str


def bake(registry: Collector, key: RenderKey, compress: bool) -> Rendered:
    """Render and, if any scrape sharing this render wants it, compress.

    This is the blocking part of a scrape; ``Endpoint`` runs it off the loop.

    Raises:
        Exception: Whatever a collector raises.
    """
    fmt = key.format
    body = render(registry, openmetrics=fmt.openmetrics, escaping=fmt.escaping, names=key.names)
    gzipped = gzip.compress(body, compresslevel=GZIP_LEVEL, mtime=0) if compress else None
    return Rendered(body, gzipped, fmt.content_type)


def answer(scrape: Scrape, rendered: Rendered | BaseException) -> Response:
    """The response to ``scrape`` given its render, or the exception the render raised."""
    if isinstance(rendered, BaseException):
        return _reason(500, failure_reason(rendered))
    headers = {"Content-Type": rendered.content_type, "Vary": "Accept, Accept-Encoding"}
    body = rendered.body
    if scrape.gzip and rendered.gzipped is not None:
        headers["Content-Encoding"] = "gzip"
        body = rendered.gzipped
    headers["Content-Length"] = str(len(body))
    return Response(200, headers, body)


def respond(
    request: Request, registry: Collector = REGISTRY, *, path: str | None = "/metrics"
) -> Response:
    """The whole response to ``request``, rendered in the calling thread.

    For code with no event loop to protect (a WSGI app, a test, a batch job);
    ``Endpoint`` is the same policy with off-loop, shared renders and limits.
    """
    scrape = route(request, path)
    if isinstance(scrape, Response):
        return for_method(request, scrape)
    try:
        rendered: Rendered | Exception = bake(registry, scrape.key, scrape.gzip)
    except Exception as exc:
        rendered = exc
    return for_method(request, answer(scrape, rendered))
