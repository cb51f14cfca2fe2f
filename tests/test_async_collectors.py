import asyncio
import threading
from collections.abc import AsyncIterator, Iterable

import aiohttp
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from bigbrotr.core.base_service import BaseServiceConfig
from bigbrotr.core.metrics import (
    MetricsConfig,
    register_async_collector,
    unregister_async_collector,
)
from bigbrotr.core.server import MetricsServer
from tests.conftest import scripted
from tests.e2e.conftest import sample


class QueueDepth:
    """Fetches a queue length with ``await``, as from a broker; records where it ran."""

    def __init__(self, delay: float = 0.0, error: Exception | None = None) -> None:
        self.delay = delay
        self.error = error
        self.depth = 0
        self.calls = 0
        self.threads: set[int] = set()

    async def collect(self) -> Iterable[Metric]:
        self.calls += 1
        self.threads.add(threading.get_ident())
        await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        self.depth += 1
        return [GaugeMetricFamily("jobs_queue_depth", "Jobs waiting.", value=self.depth)]


@pytest.fixture
async def served() -> AsyncIterator[tuple[CollectorRegistry, MetricsServer]]:
    """A registry of its own behind a running server (render timeout 0.5 s)."""
    registry = CollectorRegistry()
    server = MetricsServer(MetricsConfig(enabled=True, port=0, render_timeout=0.5), registry)
    await server.start()
    yield registry, server
    await server.stop()


async def scrape(http: aiohttp.ClientSession, server: MetricsServer) -> tuple[int, str]:
    assert server.url is not None
    async with http.get(server.url) as response:
        return response.status, await response.text()


async def test_collect_is_awaited_on_the_service_loop_before_each_scrape(
    served: tuple[CollectorRegistry, MetricsServer], http: aiohttp.ClientSession
) -> None:
    """Each scrape fetches anew, on the loop that registered the collector (not the server's)."""
    registry, server = served
    collector = QueueDepth()
    register_async_collector(collector, registry)
    first, second = await scrape(http, server), await scrape(http, server)
    assert sample(first[1], "jobs_queue_depth") == 1
    assert sample(second[1], "jobs_queue_depth") == 2
    assert collector.threads == {threading.get_ident()}  # this loop's thread


async def test_concurrent_scrapes_share_one_collect(
    served: tuple[CollectorRegistry, MetricsServer], http: aiohttp.ClientSession
) -> None:
    """Five scrapes at once wait for the same collect() (at most one in flight)."""
    registry, server = served
    collector = QueueDepth(delay=0.2)
    register_async_collector(collector, registry)
    answers = await asyncio.gather(*(scrape(http, server) for _ in range(5)))
    assert [status for status, _ in answers] == [200] * 5
    assert collector.calls == 1


async def test_a_failing_collect_answers_500_with_its_reason(
    served: tuple[CollectorRegistry, MetricsServer], http: aiohttp.ClientSession
) -> None:
    """An exception in collect() fails the scrape, as a synchronous collector's would."""
    registry, server = served
    register_async_collector(QueueDepth(error=ConnectionError("broker down")), registry)
    status, text = await scrape(http, server)
    assert status == 500
    assert "QueueDepth: ConnectionError: broker down" in text


async def test_a_slow_collect_answers_503_and_the_loop_runs_on(
    served: tuple[CollectorRegistry, MetricsServer], http: aiohttp.ClientSession
) -> None:
    """Past render_timeout the scrape gets 503 naming the async collectors; nothing blocks."""
    registry, server = served
    register_async_collector(QueueDepth(delay=2.0), registry)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticking = asyncio.create_task(tick())
    status, text = await scrape(http, server)
    ticking.cancel()
    assert status == 503
    assert text == "the async collectors took longer than render_timeout=0.5s\n"
    assert ticks >= 10  # the service's loop kept running while the scrape waited


async def test_registered_before_any_loop_it_runs_on_the_service_loop(
    served: tuple[CollectorRegistry, MetricsServer], http: aiohttp.ClientSession
) -> None:
    """Registered with no loop running, it fails until a service starts, then uses its loop."""
    registry, server = served
    collector = QueueDepth()
    await asyncio.to_thread(register_async_collector, collector, registry)
    status, text = await scrape(http, server)
    assert status == 500 and "no event loop to run it on" in text
    async with scripted()(BaseServiceConfig()):
        status, text = await scrape(http, server)
    assert status == 200 and sample(text, "jobs_queue_depth") == 1


async def test_unregistered_it_is_gone(
    served: tuple[CollectorRegistry, MetricsServer], http: aiohttp.ClientSession
) -> None:
    """unregister_async_collector removes its families and stops the fetches."""
    registry, server = served
    collector = QueueDepth()
    register_async_collector(collector, registry)
    await scrape(http, server)
    unregister_async_collector(collector, registry)
    status, text = await scrape(http, server)
    assert status == 200 and "jobs_queue_depth" not in text
    assert collector.calls == 1
