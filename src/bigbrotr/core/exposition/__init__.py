"""Exposition: a registry rendered for Prometheus, and the scrape policy, with no web framework.

The pure core every adapter shares (``MetricsServer`` on aiohttp,
``bigbrotr.core.asgi`` for ASGI frameworks):

- ``render`` writes a registry exactly as prometheus_client does (text 0.0.4 or
  OpenMetrics 1.0.0), several times faster and from any thread;
  ``fast_path_active`` tells whether its fast path passed its self-check.
- ``respond`` turns a scrape ``Request`` and a registry into a complete
  ``Response`` (negotiation, gzip, ``name[]``, HEAD, 404, 405, the 500
  reason), rendering in the calling thread.
- ``Endpoint`` is the same policy for an event loop: renders off the loop,
  shared by concurrent scrapes, an in-flight limit and a render timeout (503).
- ``Site`` is every route an endpoint serves: basic auth (``Access``), health,
  the status page and JSON, the configured headers, and ``Endpoint`` for the
  metrics. The aiohttp server and the ASGI app both call it.
"""

from bigbrotr.core.exposition._endpoint import Endpoint
from bigbrotr.core.exposition._http import (
    CONTENT_TYPE_OPENMETRICS,
    CONTENT_TYPE_TEXT,
    Format,
    Request,
    Response,
    gzip_accepted,
    negotiate,
    respond,
)
from bigbrotr.core.exposition._renderer import fast_path_active, render
from bigbrotr.core.exposition._site import (
    MAX_PENDING_CHECKS,
    MAX_PENDING_CHECKS_PER_CLIENT,
    SERVER,
    Access,
    Healths,
    Site,
    Statuses,
)

__all__ = [
    "CONTENT_TYPE_OPENMETRICS",
    "CONTENT_TYPE_TEXT",
    "MAX_PENDING_CHECKS",
    "MAX_PENDING_CHECKS_PER_CLIENT",
    "SERVER",
    "Access",
    "Endpoint",
    "Format",
    "Healths",
    "Request",
    "Response",
    "Site",
    "Statuses",
    "fast_path_active",
    "gzip_accepted",
    "negotiate",
    "render",
    "respond",
]
