"""Pure exposition: request headers and a registry in, response parts out.

Nothing here knows about aiohttp or the event loop; ``MetricsServer`` is a thin
adapter that calls ``scrape_request`` on the loop and ``bake`` in a worker
thread.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.registry import Collector

from bigbrotr.core.renderer import render

__all__ = [
    "CONTENT_TYPE_OPENMETRICS",
    "CONTENT_TYPE_TEXT",
    "GZIP_LEVEL",
    "Format",
    "Rendered",
    "ScrapeRequest",
    "bake",
    "gzip_accepted",
    "negotiate",
    "scrape_request",
]

CONTENT_TYPE_TEXT = "text/plain; version=0.0.4; charset=utf-8"
CONTENT_TYPE_OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
#: Fastest zlib level: metrics text still shrinks ~10x, and scrapes stay cheap.
GZIP_LEVEL = 1
_ESCAPINGS = frozenset(
    (openmetrics.ALLOWUTF8, openmetrics.UNDERSCORES, openmetrics.DOTS, openmetrics.VALUES)
)


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
class ScrapeRequest:
    """What shapes a response body; scrapes with equal requests can share one render.

    Attributes:
        format: The negotiated format.
        names: ``name[]`` filter, or None for every family.
    """

    format: Format
    names: frozenset[str] | None


def scrape_request(accept: str | None, names: Iterable[str] = ()) -> ScrapeRequest:
    """Build the ``ScrapeRequest`` for an ``Accept`` header and ``name[]`` values."""
    return ScrapeRequest(negotiate(accept), frozenset(names) or None)


@dataclass(frozen=True)
class Rendered:
    """One render, in the encodings its scrapes asked for."""

    body: bytes
    gzipped: bytes | None
    content_type: str

    def response(self, gzip_wanted: bool) -> tuple[bytes, dict[str, str]]:
        """Body and headers for one scrape; ``Content-Encoding`` only when compressed."""
        headers = {"Content-Type": self.content_type, "Vary": "Accept, Accept-Encoding"}
        if gzip_wanted and self.gzipped is not None:
            headers["Content-Encoding"] = "gzip"
            return self.gzipped, headers
        return self.body, headers


def bake(registry: Collector, request: ScrapeRequest, compress: bool) -> Rendered:
    """Render and, if any scrape sharing this render wants it, compress.

    This is the blocking part of a scrape; it runs off the event loop.

    Raises:
        Exception: Whatever a collector raises.
    """
    fmt = request.format
    body = render(registry, fmt.openmetrics, fmt.escaping, request.names)
    gzipped = gzip.compress(body, compresslevel=GZIP_LEVEL, mtime=0) if compress else None
    return Rendered(body, gzipped, fmt.content_type)
