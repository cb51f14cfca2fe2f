import asyncio
import gzip
import threading
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict
from prometheus_client import CollectorRegistry

from bigbrotr.core.asgi import make_asgi_app
from bigbrotr.core.exposition import CONTENT_TYPE_OPENMETRICS, CONTENT_TYPE_TEXT, render
from tests.support.asgi import Serve, user_registry
from tests.support.collectors import BrokenCollector, GatedCollector

#: Families the tests' registries define, as ``name[]`` selects them: a filtered body
#: leaves out the endpoint's own metrics, whose values change with every scrape.
USER_FAMILIES = ("jobs", "temperature_celsius", "wait_seconds")
USER_QUERY = [("name[]", name) for name in USER_FAMILIES]
PROMETHEUS_2_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


@pytest.fixture
def registry() -> CollectorRegistry:
    """A fresh registry with a counter, a gauge and a histogram."""
    return user_registry()


@pytest.fixture
async def raw_http() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client session that hands back bodies as sent, still compressed."""
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        yield session


async def render_started(gated: GatedCollector, scrape: asyncio.Task[Any]) -> None:
    """Wait until ``scrape``'s render is blocked inside the gated collector.

    Fails at once, rather than at the test timeout, if the scrape is answered instead.
    """
    while gated.calls == 0:
        if scrape.done():
            pytest.fail(f"the scrape was answered without a render: {scrape.result()!r}")
        await asyncio.sleep(0.01)


async def test_get_serves_the_registry_in_text_0_0_4(
    serve: Serve, http: aiohttp.ClientSession, registry: CollectorRegistry
) -> None:
    """GET answers 200 in text 0.0.4, byte for byte what render writes for the same families."""
    async with serve(make_asgi_app(registry)) as url:
        async with http.get(f"{url}/metrics", params=USER_QUERY) as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == CONTENT_TYPE_TEXT
            assert response.headers["Vary"] == "Accept, Accept-Encoding"
            body = await response.read()
        async with http.get(f"{url}/metrics") as response:
            whole = await response.text()
    assert body == render(registry, names=USER_FAMILIES)
    assert b'jobs_total{queue="a"} 2.0' in body and b"metrics_handler" not in body
    assert "metrics_handler_requests_in_flight 1.0" in whole  # the scrape sees itself


async def test_repeated_headers_are_all_kept(
    serve: Serve, http: aiohttp.ClientSession, registry: CollectorRegistry
) -> None:
    """An Accept header sent three times is read whole: the best entry is in the middle one."""
    headers = CIMultiDict(
        [
            ("Accept", "text/plain;q=0.2"),
            ("Accept", "application/openmetrics-text;version=1.0.0;q=0.9"),
            ("Accept", "text/plain;version=0.0.4;q=0.1"),
        ]
    )
    async with serve(make_asgi_app(registry)) as url, http.get(url, headers=headers) as response:
        assert response.headers["Content-Type"] == CONTENT_TYPE_OPENMETRICS


async def test_prometheus_accept_gets_openmetrics(
    serve: Serve, http: aiohttp.ClientSession, registry: CollectorRegistry
) -> None:
    """Prometheus' own Accept header gets OpenMetrics 1.0.0, with _created and # EOF."""
    async with serve(make_asgi_app(registry)) as url:
        accept = {"Accept": PROMETHEUS_2_ACCEPT}
        async with http.get(url, headers=accept, params=USER_QUERY) as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == CONTENT_TYPE_OPENMETRICS
            body = await response.read()
    assert body == render(registry, openmetrics=True, names=USER_FAMILIES)
    assert body.endswith(b"# EOF\n") and b"jobs_created" in body


async def test_gzip_only_when_accepted(
    serve: Serve, raw_http: aiohttp.ClientSession, registry: CollectorRegistry
) -> None:
    """Accept-Encoding: gzip gets a gzip body of the same text; identity gets it plain."""
    async with serve(make_asgi_app(registry)) as url:
        gz = {"Accept-Encoding": "gzip"}
        async with raw_http.get(url, headers=gz, params=USER_QUERY) as response:
            assert response.headers["Content-Encoding"] == "gzip"
            raw = await response.read()
            assert response.headers["Content-Length"] == str(len(raw))
        plain = {"Accept-Encoding": "identity"}
        async with raw_http.get(url, headers=plain, params=USER_QUERY) as response:
            assert "Content-Encoding" not in response.headers
            text = await response.read()
    assert raw[:2] == b"\x1f\x8b"
    assert gzip.decompress(raw) == text == render(registry, names=USER_FAMILIES)


async def test_head_has_the_get_length_and_no_body(
    serve: Serve, http: aiohttp.ClientSession, registry: CollectorRegistry
) -> None:
    """HEAD gives GET's headers, Content-Length included, no body, and keeps the connection sane."""
    identity = {"Accept-Encoding": "identity"}
    async with serve(make_asgi_app(registry)) as url:
        async with http.head(url, headers=identity, params=USER_QUERY) as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == CONTENT_TYPE_TEXT
            length = int(response.headers["Content-Length"])
            assert await response.read() == b""
        async with http.get(url, headers=identity, params=USER_QUERY) as response:
            body = await response.read()
    assert length == len(body) > 0
    assert body == render(registry, names=USER_FAMILIES)


async def test_path_gives_404_elsewhere_and_405_for_post(
    serve: Serve, http: aiohttp.ClientSession, registry: CollectorRegistry
) -> None:
    """With path="/metrics", other paths get 404 and POST gets 405 with Allow, each with reasons."""
    async with serve(make_asgi_app(registry, path="/metrics")) as url:
        async with http.get(f"{url}/metrics") as response:
            assert response.status == 200
        async with http.get(f"{url}/other") as response:
            assert response.status == 404
            assert await response.text() == "not found; metrics are at /metrics\n"
        async with http.post(f"{url}/metrics", data=b"x") as response:
            assert response.status == 405
            assert response.headers["Allow"] == "GET, HEAD"
            assert await response.text() == "method not allowed; use GET or HEAD\n"


async def test_no_path_serves_every_path(
    serve: Serve, http: aiohttp.ClientSession, registry: CollectorRegistry
) -> None:
    """With path=None (the default), any path is the endpoint, as a mounted app needs."""
    async with serve(make_asgi_app(registry)) as url:
        for path in ("/", "/metrics", "/metrics/", "/deep/ly/nested"):
            async with http.get(f"{url}{path}") as response:
                assert response.status == 200, path
                assert 'jobs_total{queue="a"} 2.0' in await response.text()


async def test_renders_off_the_event_loop_and_coalesces(
    serve: Serve,
    http: aiohttp.ClientSession,
    gated_registry: tuple[CollectorRegistry, GatedCollector],
) -> None:
    """Collectors run on the render thread; 8 concurrent scrapes, gzip or not, cost <= 2 renders."""
    registry, gated = gated_registry
    async with serve(make_asgi_app(registry)) as url:
        first = asyncio.create_task(http.get(url))
        await render_started(gated, first)
        encodings = ["gzip", "identity"] * 4
        others = [
            asyncio.create_task(http.get(url, headers={"Accept-Encoding": encoding}))
            for encoding in encodings[:7]
        ]
        polls = 1
        while registry.get_sample_value("metrics_handler_requests_in_flight") != 8:
            if any(task.done() for task in others):
                pytest.fail("a concurrent scrape was answered while the render was blocked")
            polls += 1
            await asyncio.sleep(0.01)
        gated.gate.set()
        responses = await asyncio.gather(first, *others)
        assert [r.status for r in responses] == [200] * 8
        assert {r.headers.get("Content-Encoding") for r in responses[1:]} == {"gzip", None}
        for response in responses:
            assert "gated_value 1.0" in await response.text()
            response.release()
    assert 1 <= gated.calls <= 2
    on_main = [thread for thread in gated.threads if thread is threading.main_thread()]
    assert len(on_main) == polls  # only this test's own reads; every render ran elsewhere
    assert {thread.name for thread in gated.threads} - {"MainThread"} == {"bigbrotr-render"}


async def test_in_flight_limit_gives_503(
    serve: Serve,
    http: aiohttp.ClientSession,
    gated_registry: tuple[CollectorRegistry, GatedCollector],
) -> None:
    """Over max_requests_in_flight, a scrape gets 503 with a one-line reason, and is counted."""
    registry, gated = gated_registry
    async with serve(make_asgi_app(registry, max_requests_in_flight=1)) as url:
        first = asyncio.create_task(http.get(url))
        await render_started(gated, first)
        async with http.get(url) as response:
            assert response.status == 503
            assert await response.text() == (
                "too many concurrent scrapes (max_requests_in_flight=1)\n"
            )
        gated.gate.set()
        async with await first as response:
            assert response.status == 200
    assert registry.get_sample_value("metrics_handler_requests_total", {"code": "503"}) == 1
    assert registry.get_sample_value("metrics_handler_requests_total", {"code": "200"}) == 1


async def test_failing_collector_gives_500_with_one_line(
    serve: Serve, http: aiohttp.ClientSession
) -> None:
    """A raising collector answers 500 with a one-line reason, and the app serves on after it."""
    registry = CollectorRegistry()
    broken = BrokenCollector()
    registry.register(broken)
    async with serve(make_asgi_app(registry)) as url:
        async with http.get(url) as response:
            assert response.status == 500
            assert await response.text() == (
                "collecting metrics failed: RuntimeError: upstream unavailable\n"
            )
        registry.unregister(broken)
        async with http.get(url) as response:
            assert response.status == 200
    assert registry.get_sample_value("metrics_handler_requests_total", {"code": "500"}) == 1


async def test_handler_counts_its_responses(
    serve: Serve, http: aiohttp.ClientSession, registry: CollectorRegistry
) -> None:
    """metrics_handler_requests_total{code="200"} counts scrapes; a 404 is not a scrape."""
    app = make_asgi_app(registry, path="/metrics")
    assert registry.get_sample_value("metrics_handler_requests_total", {"code": "200"}) == 0
    async with serve(app) as url:
        for _ in range(3):
            async with http.get(f"{url}/metrics") as response:
                assert response.status == 200
        async with http.get(f"{url}/nowhere") as response:
            assert response.status == 404
    assert registry.get_sample_value("metrics_handler_requests_total", {"code": "200"}) == 3
    assert registry.get_sample_value("metrics_handler_requests_in_flight") == 0


async def test_lifespan_shutdown_stops_the_render_thread(
    serve: Serve,
    http: aiohttp.ClientSession,
    gated_registry: tuple[CollectorRegistry, GatedCollector],
) -> None:
    """When uvicorn shuts down, the lifespan closes the endpoint and its render thread ends."""
    registry, gated = gated_registry
    gated.gate.set()
    async with serve(make_asgi_app(registry)) as url:
        async with http.get(url) as response:
            assert response.status == 200
        (render_thread,) = {t for t in gated.threads if t is not threading.main_thread()}
        assert render_thread.is_alive()
    render_thread.join(timeout=10)
    assert not render_thread.is_alive()


async def test_websocket_is_refused_and_unknown_scopes_raise(registry: CollectorRegistry) -> None:
    """A websocket is closed before acceptance; an unknown scope type raises a clear error."""
    # Called directly: uvicorn here has no websocket library to carry the handshake.
    app = make_asgi_app(registry)
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    await app({"type": "websocket", "path": "/metrics", "headers": []}, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1008}]
    with pytest.raises(ValueError, match="'http' and 'lifespan' scopes, not 'webtransport'"):
        await app({"type": "webtransport"}, receive, send)


async def test_a_group_of_services_is_served_as_bigbrotr_run_serves_it(
    serve: Serve, http: aiohttp.ClientSession, registry: CollectorRegistry
) -> None:
    """Given a ServiceGroup, the app answers for each service: /readyz?verbose, status.json."""
    from bigbrotr.core.base_service import named
    from bigbrotr.core.service_group import ServiceGroup
    from bigbrotr.services.demo import DemoConfig, DemoService

    with named("asgi-a"):
        first = DemoService(DemoConfig())
    with named("asgi-b"):
        second = DemoService(DemoConfig())
    app = make_asgi_app(registry, service=ServiceGroup([first, second]))
    async with serve(app) as url:
        async with http.get(f"{url}/readyz?verbose") as response:
            verbose = await response.text()
            assert response.status == 200
        async with http.get(f"{url}/status.json") as response:
            status = await response.json()
    assert "[+]asgi-a: freshness ok" in verbose and "[+]asgi-b: freshness ok" in verbose
    assert [each["service"] for each in status["services"]] == ["asgi-a", "asgi-b"]
