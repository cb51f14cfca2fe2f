import asyncio
import contextlib
import gzip
import io
import json
import socket
import subprocess
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from bigbrotr.core import metrics
from bigbrotr.core.exposition import CONTENT_TYPE_OPENMETRICS, CONTENT_TYPE_TEXT
from bigbrotr.core.metrics import MetricsConfig
from bigbrotr.core.server import MetricsServer
from tests.support.collectors import BrokenCollector, GatedCollector


def _registry_with_gauge() -> CollectorRegistry:
    registry = CollectorRegistry()
    Gauge("probe_value", "A probe.", registry=registry).set(42)
    return registry


def test_metrics_server_is_importable_from_the_seed_module() -> None:
    """The seed documents MetricsServer in bigbrotr.core.metrics; it is the aiohttp adapter."""
    assert metrics.MetricsServer is MetricsServer
    assert "MetricsServer" in metrics.__all__


async def test_disabled_server_start_is_a_noop() -> None:
    """With enabled=False, start binds nothing and port/url stay None."""
    server = MetricsServer(MetricsConfig(enabled=False, port=0))
    await server.start()
    assert server.port is None
    assert server.url is None
    await server.stop()


async def test_server_serves_registry_on_get(http: aiohttp.ClientSession) -> None:
    """GET on the path returns the registry in the Prometheus text format."""
    config = MetricsConfig(enabled=True, port=0, path="/custom")
    server = MetricsServer(config, registry=_registry_with_gauge())
    await server.start()
    try:
        assert server.port
        assert server.url == f"http://127.0.0.1:{server.port}/custom"
        async with http.get(server.url) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            assert "probe_value 42.0" in await response.text()
    finally:
        await server.stop()


async def test_server_answers_head_404_and_405(http: aiohttp.ClientSession) -> None:
    """HEAD gives headers only; other paths 404; other methods 405."""
    server = MetricsServer(MetricsConfig(enabled=True, port=0), _registry_with_gauge())
    await server.start()
    assert server.url is not None
    try:
        async with http.head(server.url) as response:
            assert response.status == 200
            assert await response.read() == b""
        async with http.get(server.url.replace("/metrics", "/other")) as response:
            assert response.status == 404
        async with http.post(server.url) as response:
            assert response.status == 405
    finally:
        await server.stop()


async def test_failed_bind_names_host_port_and_leaves_nothing(
    listening_socket: socket.socket,
) -> None:
    """A port in use raises OSError naming host:port; the server can start later."""
    busy = listening_socket.getsockname()[1]
    server = MetricsServer(MetricsConfig(enabled=True, port=busy))
    with pytest.raises(OSError, match=f"127.0.0.1:{busy}"):
        await server.start()
    assert server.port is None
    assert server.url is None
    listening_socket.close()
    await server.start()
    try:
        assert server.port == busy
    finally:
        await server.stop()


async def test_stop_is_idempotent_and_releases_the_port(
    assert_port_free: Callable[[int], None],
) -> None:
    """stop() before start, after stop and twice is safe; the port is free after."""
    server = MetricsServer(MetricsConfig(enabled=True, port=0))
    await server.stop()
    await server.start()
    port = server.port
    assert port is not None
    await server.stop()
    await server.stop()
    assert server.port is None
    assert_port_free(port)


async def render_started(gated: GatedCollector) -> None:
    """Wait until a render is blocked inside the gated collector."""
    while gated.calls == 0:
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def serving(registry: CollectorRegistry, **config: Any) -> AsyncIterator[str]:
    """A started MetricsServer for ``registry`` on a free port; yields its URL."""
    server = MetricsServer(MetricsConfig(enabled=True, port=0, **config), registry)
    await server.start()
    assert server.url is not None
    try:
        yield server.url
    finally:
        await server.stop()


def rich_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    Counter("jobs", "Jobs done.", ["queue"], registry=registry).labels("a").inc(2)
    Gauge("temperature_celsius", "Temp.", registry=registry).set(21.5)
    Histogram("wait_seconds", "Wait.", registry=registry).observe(0.2)
    return registry


async def test_handler_metrics_exported_at_zero_from_start(http: aiohttp.ClientSession) -> None:
    """Codes 200, 500 and 503 and the in-flight gauge exist at 0 before any scrape."""
    registry = CollectorRegistry()
    async with serving(registry):
        for code in ("200", "500", "503"):
            labels = {"code": code}
            assert registry.get_sample_value("metrics_handler_requests_total", labels) == 0
        assert registry.get_sample_value("metrics_handler_requests_in_flight") == 0


async def test_negotiates_openmetrics_and_text(http: aiohttp.ClientSession) -> None:
    """OpenMetrics when asked (with _created and # EOF); text 0.0.4 without _created otherwise."""
    async with serving(rich_registry()) as url:
        accept = {"Accept": "application/openmetrics-text;version=1.0.0"}
        async with http.get(url, headers=accept) as response:
            assert response.headers["Content-Type"] == CONTENT_TYPE_OPENMETRICS
            body = await response.text()
        assert body.endswith("# EOF\n") and "jobs_created" in body
        async with http.get(url) as response:
            assert response.headers["Content-Type"] == CONTENT_TYPE_TEXT
            body = await response.text()
        assert "jobs_total" in body and "_created" not in body and "# EOF" not in body
        utf8 = {"Accept": "text/plain;version=1.0.0;escaping=allow-utf-8"}
        async with http.get(url, headers=utf8) as response:
            assert response.headers["Content-Type"] == (
                "text/plain; version=1.0.0; charset=utf-8; escaping=allow-utf-8"
            )


async def test_gzip_only_when_accepted() -> None:
    """Accept-Encoding: gzip gives a gzip body; without it, no Content-Encoding."""
    async with (
        serving(rich_registry()) as url,
        aiohttp.ClientSession(auto_decompress=False) as raw,
    ):
        async with raw.get(url, headers={"Accept-Encoding": "gzip"}) as response:
            assert response.headers["Content-Encoding"] == "gzip"
            assert b"temperature_celsius 21.5" in gzip.decompress(await response.read())
        async with raw.get(url, headers={"Accept-Encoding": "identity"}) as response:
            assert "Content-Encoding" not in response.headers
            assert b"temperature_celsius 21.5" in await response.read()


async def test_name_filter_over_http(http: aiohttp.ClientSession) -> None:
    """?name[]=a&name[]=b returns only those families."""
    async with serving(rich_registry()) as url:
        url = f"{url}?name[]=jobs_total&name[]=wait_seconds"
        async with http.get(url) as response:
            body = await response.text()
    families = [line.split()[2] for line in body.splitlines() if line.startswith("# TYPE")]
    assert families == ["jobs_total", "wait_seconds"]


async def test_head_returns_headers_only(http: aiohttp.ClientSession) -> None:
    """HEAD gives the GET's status and headers, and no body."""
    async with serving(rich_registry()) as url:
        identity = {"Accept-Encoding": "identity"}
        async with http.get(url, headers=identity) as response:
            length = len(await response.read())
        async with http.head(url, headers=identity) as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == CONTENT_TYPE_TEXT
            assert int(response.headers["Content-Length"]) == length
            assert await response.read() == b""


async def test_renders_off_the_event_loop_and_coalesces(
    http: aiohttp.ClientSession, gated_registry: tuple[CollectorRegistry, GatedCollector]
) -> None:
    """Collectors run off the loop; 8 concurrent scrapes, gzip or not, cost at most two renders."""
    registry, gated = gated_registry
    async with serving(registry) as url:
        first = asyncio.create_task(http.get(url))
        await render_started(gated)
        encodings = ["gzip", "identity"] * 4
        others = [
            asyncio.create_task(http.get(url, headers={"Accept-Encoding": encoding}))
            for encoding in encodings[:7]
        ]
        polls = 1
        while registry.get_sample_value("metrics_handler_requests_in_flight") != 8:
            polls += 1
            await asyncio.sleep(0.01)
        gated.gate.set()
        responses = await asyncio.gather(first, *others)
        assert [r.status for r in responses] == [200] * 8
        assert {r.headers.get("Content-Encoding") for r in responses[1:]} == {"gzip", None}
        for response in responses:
            assert "gated_value 1.0" in await response.text()
    assert 1 <= gated.calls <= 2
    on_main = [thread for thread in gated.threads if thread is threading.main_thread()]
    assert len(on_main) == polls  # only this test's own reads; every render ran elsewhere
    assert {thread.name for thread in gated.threads} - {"MainThread"} == {"bigbrotr-render"}


async def test_in_flight_limit_gives_503(
    http: aiohttp.ClientSession, gated_registry: tuple[CollectorRegistry, GatedCollector]
) -> None:
    """Over max_requests_in_flight, a scrape gets 503 with a one-line reason, and is counted."""
    registry, gated = gated_registry
    async with serving(registry, max_requests_in_flight=1) as url:
        first = asyncio.create_task(http.get(url))
        await render_started(gated)
        assert registry.get_sample_value("metrics_handler_requests_in_flight") == 1
        async with http.get(url) as response:
            assert response.status == 503
            text = await response.text()
        assert text == "too many concurrent scrapes (max_requests_in_flight=1)\n"
        gated.gate.set()
        async with await first as response:
            assert response.status == 200
        assert registry.get_sample_value("metrics_handler_requests_total", {"code": "503"}) == 1
        assert registry.get_sample_value("metrics_handler_requests_total", {"code": "200"}) == 1
        assert registry.get_sample_value("metrics_handler_requests_in_flight") == 0


async def test_render_timeout_gives_503(
    http: aiohttp.ClientSession, gated_registry: tuple[CollectorRegistry, GatedCollector]
) -> None:
    """A render slower than render_timeout answers 503, and the server recovers."""
    registry, gated = gated_registry
    async with serving(registry, render_timeout=0.2) as url:
        async with http.get(url) as response:
            assert response.status == 503
            assert await response.text() == "rendering took longer than render_timeout=0.2s\n"
        gated.gate.set()
        async with http.get(url) as response:
            assert response.status == 200
            assert "gated_value 1.0" in await response.text()


async def test_failing_collector_gives_500_logged_once(
    http: aiohttp.ClientSession, log_stream: io.StringIO
) -> None:
    """A raising collector answers 500 with one line, is logged once, and the server lives on."""
    registry = CollectorRegistry()
    broken = BrokenCollector()
    registry.register(broken)
    async with serving(registry) as url:
        for _ in range(3):
            async with http.get(url) as response:
                assert response.status == 500
                text = await response.text()
        assert text == "collecting metrics failed: RuntimeError: upstream unavailable\n"
        registry.unregister(broken)
        async with http.get(url) as response:
            assert response.status == 200
    errors = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    errors = [line for line in errors if line["event"] == "scrape failed"]
    assert len(errors) == 1
    assert registry.get_sample_value("metrics_handler_requests_total", {"code": "500"}) == 3


async def test_text_output_passes_promtool(http: aiohttp.ClientSession, tmp_path: Path) -> None:
    """Promtool check metrics accepts the text exposition of a mixed registry."""
    async with serving(rich_registry()) as url, http.get(url) as response:
        body = await response.read()
    check = await asyncio.to_thread(
        subprocess.run, ["promtool", "check", "metrics"], input=body, capture_output=True
    )
    assert check.returncode == 0, check.stderr.decode()


def closed_by_server(sock: socket.socket, timeout: float = 5) -> bool:
    """Whether the server closes ``sock`` within ``timeout`` (reading what it sent first)."""
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return True


async def test_connections_past_max_connections_are_closed_at_once(
    http: aiohttp.ClientSession,
) -> None:
    """Over max_connections, a new connection is closed at once and counted; scrapes resume."""
    registry = rich_registry()
    async with serving(registry, max_connections=3) as url:
        port = int(url.split(":")[2].split("/")[0])
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        try:
            extra = socket.create_connection(("127.0.0.1", port))
            assert await asyncio.to_thread(closed_by_server, extra)
            extra.close()
            labels = {"reason": "max_connections"}
            assert registry.get_sample_value("metrics_handler_connections_closed_total", labels)
        finally:
            for sock in held:
                sock.close()
        for _ in range(100):  # the server sees the held ones go
            try:
                async with http.get(url) as response:
                    assert response.status == 200
                    break
            except aiohttp.ClientError:
                await asyncio.sleep(0.05)
        else:
            pytest.fail("scrapes did not resume")


@pytest.mark.parametrize(
    "sent",
    [b"", b"GET /metrics HTTP/1.1\r\nHost: x\r\n"],
    ids=["idle connection", "request never finished (slowloris)"],
)
async def test_idle_and_unfinished_connections_are_closed(sent: bytes) -> None:
    """A connection that sends nothing for idle_timeout is closed and counted."""
    registry = rich_registry()
    async with serving(registry, idle_timeout=0.5, render_timeout=0.2) as url:
        port = int(url.split(":")[2].split("/")[0])
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(sent)
        assert await asyncio.to_thread(closed_by_server, sock, 5)
        sock.close()
        labels = {"reason": "idle_timeout"}
        assert registry.get_sample_value("metrics_handler_connections_closed_total", labels) == 1


async def test_malformed_requests_are_one_line_a_minute(log_stream: io.StringIO) -> None:
    """Oversized URLs and headers get 400, are counted, and log one line without a traceback."""
    registry = rich_registry()
    async with serving(registry) as url:
        port = int(url.split(":")[2].split("/")[0])
        requests = [
            b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 100_000 + b"\r\n\r\n",
            b"NONSENSE\r\n\r\n",
        ]
        for raw in requests * 3:
            with socket.create_connection(("127.0.0.1", port)) as sock:
                sock.sendall(raw)
                sock.settimeout(5)
                assert sock.recv(100).split(b"\r\n")[0].endswith(b" 400 Bad Request")
    assert registry.get_sample_value("metrics_handler_client_errors_total") == 9
    lines = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    client_lines = [line for line in lines if "malformed request" in line["event"]]
    assert len(client_lines) == 1
    assert "exception" not in client_lines[0]
    assert all("Traceback" not in json.dumps(line) for line in lines)


async def test_request_bodies_are_never_inflated(http: aiohttp.ClientSession) -> None:
    """A gzip body is not decoded (no route reads one): even a broken one is just ignored."""
    server = MetricsServer(MetricsConfig(enabled=True, port=0), _registry_with_gauge())
    await server.start()
    assert server.url is not None
    not_gzip = b"\x1f\x8b" + b"this is not deflate data" * 100
    try:
        for method in ("GET", "POST"):
            async with http.request(
                method, server.url, data=not_gzip, headers={"Content-Encoding": "gzip"}
            ) as response:
                assert response.status == (200 if method == "GET" else 405), method
    finally:
        await server.stop()
