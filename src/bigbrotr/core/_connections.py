"""The metrics server's connection guard: a limit, an idle timer, and client errors counted.

Private to ``bigbrotr.core.server``. ``Guarded`` wraps aiohttp's protocol for
each connection: past ``max_connections`` a new one is closed at once, and one
that sends nothing for ``idle_timeout`` seconds is closed (an idle keep-alive,
a request never finished, a TLS handshake never begun). Malformed requests and
failed accepts are counted and logged in one line at most once a minute.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

from bigbrotr.core.logger import Throttle
from bigbrotr.core.metrics_config import MetricsConfig
from bigbrotr.core.self_metrics import ConnectionMetrics

__all__ = ["Connections", "Guarded", "client_error_log"]

#: Client errors are logged at most this often (seconds).
_CLIENT_ERROR_LOG_EVERY = 60.0


def client_error_log(counter: Any) -> logging.Logger:
    """A logger of its own for one server's client errors, passing them on once a minute.

    Not registered by name, so each server's filter sees only its own errors;
    what passes goes up to ``bigbrotr.http`` and the handlers configured there.
    """
    logger = logging.Logger("bigbrotr.http.clients", logging.DEBUG)  # aiohttp logs some at DEBUG
    logger.parent = logging.getLogger("bigbrotr.http")
    logger.addFilter(_OncePerMinute(counter))
    return logger


class _OncePerMinute(logging.Filter):
    """Turns aiohttp's per-request error tracebacks into one counted line a minute."""

    def __init__(self, counter: Any) -> None:
        super().__init__()
        self._counter = counter
        self._throttle = Throttle(every=_CLIENT_ERROR_LOG_EVERY)

    def filter(self, record: logging.LogRecord) -> bool:
        """Count the record; let one summary line through per minute, without a traceback."""
        self._counter.inc()
        error = record.exc_info[1] if record.exc_info else None
        detail = f"{type(error).__name__}: {error}" if error else record.getMessage()
        record.exc_info = record.exc_text = None
        seen = self._throttle.note()
        if not seen.log:
            return False
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.msg = "metrics server: %d malformed request(s) or failed accept(s); last: %s"
        record.args = (seen.since, " ".join(detail.split())[:200])
        return True


class Connections:
    """The live connections of one server, and the limits they are held to."""

    def __init__(self, config: MetricsConfig, metrics: ConnectionMetrics) -> None:
        self.live = 0
        self.max = config.max_connections
        self.idle_timeout = config.idle_timeout
        self.metrics = metrics


class Guarded(asyncio.Protocol):
    """aiohttp's protocol for one connection, behind the connection limit and idle timer."""

    def __init__(self, inner: asyncio.Protocol, connections: Connections) -> None:
        self._inner = inner
        self._connections = connections
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._accepted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        stream = cast(asyncio.Transport, transport)  # create_server gives stream transports
        connections = self._connections
        if connections.live >= connections.max:
            connections.metrics.over_limit.inc()
            stream.abort()
            return
        connections.live += 1
        self._accepted = True
        self._transport = stream
        self._arm()
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._arm()
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._disarm()  # a slow reader of a large body is not idle
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._arm()
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._accepted:
            return
        self._connections.live -= 1
        self._disarm()
        self._inner.connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._connections.idle_timeout, self._expire)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        self._timer = None
        if self._transport is not None and not self._transport.is_closing():
            self._connections.metrics.idle.inc()
            self._transport.abort()
