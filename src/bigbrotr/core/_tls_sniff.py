"""Plain HTTP on the TLS port gets Go's 400, not an empty reply.

A client that speaks plain HTTP to a TLS listener (``scheme: http`` in a
scrape job, ``curl`` without ``https://``) would see its connection closed by
a failed handshake, which tells nobody anything. Go's ``net/http`` answers
``400 Bad Request`` and "Client sent an HTTP request to an HTTPS server."
instead, and ``HTTPSOnly`` does the same.

The listener is a plain one, and each connection's first byte decides. It is
*peeked* at (``MSG_PEEK``), not read, because ``loop.start_tls`` takes a
transport as it is and cannot be handed bytes already read from it. The wait
for that byte watches a duplicate of the socket (asyncio lets no second reader
watch a transport's own descriptor) while the transport is paused: one
``dup``, one peek and one close per connection (asyncio's own TLS listener
spends a task per connection as well). 0x16, a TLS handshake record, goes to
``start_tls`` with everything still in the socket. Any other byte can never
begin a handshake: what the client sent is read, and if it starts as Go
recognises an HTTP request (five bytes such as ``GET /``, or fewer that begin
one), the 400 is sent; then the connection is closed, as Go closes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from typing import cast

__all__ = ["REFUSAL", "HTTPSOnly"]

#: Go's answer (net/http, server.go), byte for byte.
REFUSAL = b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"
#: The first five bytes Go takes for an HTTP request (``tlsRecordHeaderLooksLikeHTTP``).
_HTTP_STARTS = (b"GET /", b"HEAD ", b"POST ", b"PUT /", b"OPTIO")
#: The content type of a TLS handshake record: how every TLS connection begins.
_HANDSHAKE = 0x16


class HTTPSOnly(asyncio.Protocol):
    """Between a connection and ``inner``: TLS is served through to it, plain HTTP refused.

    ``inner`` hears of the connection only once a handshake has succeeded, and
    then gets the TLS transport. The protocol that wraps this one (the
    connection guard, whose limits and idle timer must cover the handshake
    too) stays the TLS layer's application protocol, so it still sees every
    decrypted byte and the loss of the connection exactly once. Until then the
    connection belongs to a task, as asyncio's own TLS listeners do it: a
    server that stops cancels the task, which closes the connection.
    """

    def __init__(self, inner: asyncio.Protocol, context: ssl.SSLContext) -> None:
        self._inner = inner
        self._context = context  # the listener's: rotated in place on reload
        self._task: asyncio.Task[None] | None = None  # held: the loop keeps tasks weakly
        self._peeking = False
        self._early: list[bytes] | None = None  # decrypted before start_tls returned
        self._early_eof = False
        self._serving = False
        self._lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        stream = cast(asyncio.Transport, transport)  # create_server gives stream transports
        stream.pause_reading()  # the first bytes stay in the socket, for the TLS layer
        self._task = asyncio.get_running_loop().create_task(self._negotiate(stream))

    def data_received(self, data: bytes) -> None:
        if self._serving:
            self._inner.data_received(data)
        elif self._early is not None:
            self._early.append(data)

    def eof_received(self) -> bool | None:
        if self._serving:
            return self._inner.eof_received()
        self._early_eof = self._early is not None
        return None

    def pause_writing(self) -> None:
        if self._serving:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._serving:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        if self._peeking and self._task is not None:
            self._task.cancel()  # (a handshake in progress hears of it from the TLS layer)
        if self._serving:
            self._serving = False
            self._inner.connection_lost(exc)

    async def _negotiate(self, transport: asyncio.Transport) -> None:
        """Peek at the first byte; start TLS on a handshake, refuse anything else."""
        try:
            peek = transport.get_extra_info("socket").dup()
        except OSError:  # out of descriptors (EMFILE): as if the accept had failed
            transport.abort()
            return
        self._peeking = True
        try:
            first = await _first_byte(peek)
            if first and first[0] != _HANDSHAKE:
                # Never TLS: read what was sent (so closing does not reset the
                # connection under our answer) and answer as Go does.
                with contextlib.suppress(OSError):
                    sent = peek.recv(65536)[:5]
                    if sent and any(start.startswith(sent) for start in _HTTP_STARTS):
                        transport.write(REFUSAL)
        except asyncio.CancelledError:
            transport.abort()  # the server stops, or the guard closed the connection
            raise
        finally:
            self._peeking = False
            peek.close()
        if first[:1] == bytes([_HANDSHAKE]):
            await self._start_tls(transport)
        else:
            transport.close()  # after the refusal, if any, is sent

    async def _start_tls(self, transport: asyncio.Transport) -> None:
        if self._lost or transport.is_closing():
            return  # closed (idle timer) while peeking: nothing to hand over
        relay = _Relay(transport.get_protocol())  # the guard, before the TLS layer replaces it
        self._early = []
        loop = asyncio.get_running_loop()
        tls: asyncio.BaseTransport | None = None
        try:
            tls = await loop.start_tls(transport, relay, self._context, server_side=True)
        except OSError:
            pass  # a failed or timed-out handshake, or a client gone; start_tls closed it
        finally:
            if tls is None:  # the TLS layer does not always report a loss during handshake
                relay.connection_lost(None)
        if tls is None or self._lost:
            return
        # The TLS layer passes on what came with the client's last handshake message
        # before start_tls returns: it waited here, and goes on once inner knows the
        # connection.
        early, self._early = self._early, None
        self._serving = True
        self._inner.connection_made(tls)
        for data in early:
            if self._serving:
                self._inner.data_received(data)
        if self._early_eof and self._serving:
            self._inner.eof_received()


async def _first_byte(peek: socket.socket) -> bytes:
    """The socket's first byte, left in it; empty if the client closed or reset first."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            return peek.recv(1, socket.MSG_PEEK)  # often there already: the client spoke first
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            return b""
        readable = loop.create_future()
        loop.add_reader(peek.fileno(), _wake, readable)
        try:
            await readable
        finally:
            loop.remove_reader(peek.fileno())


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():  # readable again before the waiting task ran
        future.set_result(None)


class _Relay(asyncio.Protocol):
    """The TLS layer's application protocol: passes everything on, and the loss once."""

    def __init__(self, to: asyncio.BaseProtocol) -> None:
        self._to = cast(asyncio.Protocol, to)
        self._lost = False

    def data_received(self, data: bytes) -> None:
        self._to.data_received(data)

    def eof_received(self) -> bool | None:
        return self._to.eof_received()

    def pause_writing(self) -> None:
        self._to.pause_writing()

    def resume_writing(self) -> None:
        self._to.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._lost:
            self._lost = True
            self._to.connection_lost(exc)
