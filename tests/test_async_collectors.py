import asyncio
import io
import subprocess
import threading
from collections.abc import AsyncIterator, Iterable

import aiohttp
import pytest
from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from bigbrotr.core.base_service import BaseServiceConfig
from bigbrotr.core.metrics import (
    MetricsConfig,
    register_async_collector,
    unregister_async_collector,
)
from bigbrotr.core.server import MetricsServer
from bigbrotr.testing import sample_value
from tests.support.services import Scripted


class QueueDepth:
    """Fetches a queue length with ``await``, as from a broker; records where it ran.

    A ``hung`` one waits in each fetch until the test opens its ``gate`` (a broker
    hanging); ``collected`` is set once a fetch has returned.
    """

    def __init__(self, error: Exception | None = None, *, hung: bool = False) -> None:
        self.error = error
        self.gate = asyncio.Event()
        if not hung:
            self.gate.set()
        self.collected = asyncio.Event()
        self.depth = 0
        self.calls = 0
        self.threads: set[int] = set()

    async def collect(self) -> Iterable[Metric]:
        self.calls += 1
        self.threads.add(threading.get_ident())
        await self.gate.wait()
        if self.error is not None:
            raise self.error
        self.depth += 1
        self.collected.set()
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
    """With no reuse interval, each scrape fetches anew, on the loop that registered it."""
    registry, server = served
    collector = QueueDepth()
    register_async_collector(collector, registry, min_interval=0)
    first, second = await scrape(http, server), await scrape(http, server)
    assert sample_value(first[1], "jobs_queue_depth") == 1
    assert sample_value(second[1], "jobs_queue_depth") == 2
    assert collector.threads == {threading.get_ident()}  # this loop's thread


async def test_concurrent_scrapes_share_one_collect(
    served: tuple[CollectorRegistry, MetricsServer], http: aiohttp.ClientSession
) -> None:
    """Five scrapes at once wait for the same collect() (at most one in flight)."""
    registry, server = served
    collector = QueueDepth(hung=True)  # in flight until the five are answered
    register_async_collector(collector, registry)
    answers = await asyncio.gather(*(scrape(http, server) for _ in range(5)))
    assert [status for status, _ in answers] == [200] * 5
    assert collector.calls == 1
    collector.gate.set()
    await asyncio.wait_for(collector.collected.wait(), 5)  # the shared fetch ends


def failures(text: str, reason: str, collector: str = "QueueDepth") -> float | None:
    return sample_value(
        text, "metrics_async_collector_failures_total", collector=collector, reason=reason
    )


async def test_a_failing_collect_is_left_out_and_counted(
    served: tuple[CollectorRegistry, MetricsServer],
    http: aiohttp.ClientSession,
    log_stream: io.StringIO,
) -> None:
    """An exception in collect(): the scrape is served without it, counted and logged."""
    registry, server = served
    Gauge("other_value", "The rest of the scrape.", registry=registry).set(1)
    register_async_collector(QueueDepth(error=ConnectionError("broker down")), registry)
    status, text = await scrape(http, server)
    assert status == 200
    assert "jobs_queue_depth" not in text and sample_value(text, "other_value") == 1
    assert failures(text, "error") == 1 and failures(text, "timeout") == 0
    assert "ConnectionError: broker down" in log_stream.getvalue()


async def test_a_late_collect_is_left_out_and_the_loop_runs_on(
    served: tuple[CollectorRegistry, MetricsServer], http: aiohttp.ClientSession
) -> None:
    """Past half the render timeout the scrape goes on without it; the loop never waits."""
    registry, server = served
    collector = QueueDepth(hung=True)  # late until the scrape is answered
    register_async_collector(collector, registry)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticking = asyncio.create_task(tick())
    status, text = await scrape(http, server)
    ticking.cancel()
    assert status == 200 and "jobs_queue_depth" not in text
    assert failures(text, "timeout") == 1
    assert ticks >= 10  # the service's loop kept running while the scrape waited
    collector.gate.set()
    await asyncio.wait_for(collector.collected.wait(), 5)  # the late fetch ends


async def test_registered_before_any_loop_it_runs_on_the_service_loop(
    scripted: Scripted, served: tuple[CollectorRegistry, MetricsServer], http: aiohttp.ClientSession
) -> None:
    """Registered with no loop running, it waits for a service to start, then uses its loop."""
    registry, server = served
    collector = QueueDepth()
    await asyncio.to_thread(register_async_collector, collector, registry)
    status, text = await scrape(http, server)
    assert status == 200 and failures(text, "no_loop") == 1
    async with scripted()(BaseServiceConfig()):
        status, text = await scrape(http, server)
    assert status == 200 and sample_value(text, "jobs_queue_depth") == 1


class Yielding:
    """``collect`` as an async generator: ``async def`` with ``yield``."""

    async def collect(self) -> AsyncIterator[Metric]:
        await asyncio.sleep(0)
        yield GaugeMetricFamily("pool_connections", "Connections open.", value=3)


async def test_collect_may_yield_its_families(
    served: tuple[CollectorRegistry, MetricsServer], http: aiohttp.ClientSession
) -> None:
    """An async generator works as well as a coroutine returning a list."""
    registry, server = served
    collector = Yielding()
    register_async_collector(collector, registry)
    status, text = await scrape(http, server)
    assert status == 200 and sample_value(text, "pool_connections") == 3
    with pytest.raises(ValueError, match="already registered"):
        register_async_collector(collector, registry)


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


class BadOutput:
    """A collector whose families would fail any render: a NaN label value."""

    async def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily("broken_thing", "Broken.", labels=["kind"])
        family.add_metric([float("nan")], 1)  # type: ignore[list-item]
        return [family]


@pytest.mark.parametrize("openmetrics", [False, True])
async def test_bad_output_is_left_out_and_counted_not_a_failed_scrape(
    served: tuple[CollectorRegistry, MetricsServer],
    http: aiohttp.ClientSession,
    log_stream: io.StringIO,
    openmetrics: bool,
) -> None:
    """A family that cannot be rendered is left out as an exception would be: 200, counted."""
    registry, server = served
    Gauge("other_value", "The rest of the scrape.", registry=registry).set(1)
    register_async_collector(BadOutput(), registry)
    assert server.url is not None
    accept = "application/openmetrics-text; version=1.0.0" if openmetrics else "text/plain"
    async with http.get(server.url, headers={"Accept": accept}) as response:
        status, text = response.status, await response.text()
    assert status == 200, text
    assert "broken_thing" not in text and sample_value(text, "other_value") == 1
    assert failures(text, "invalid", "BadOutput") == 1
    assert "label names and values must be strings" in log_stream.getvalue()


async def test_scrapes_within_the_interval_reuse_one_fetch(
    served: tuple[CollectorRegistry, MetricsServer], http: aiohttp.ClientSession
) -> None:
    """A scrape storm costs the service's loop one collect() per min_interval at most."""
    registry, server = served
    collector = QueueDepth()
    register_async_collector(collector, registry, min_interval=60)
    answers = [await scrape(http, server) for _ in range(5)]
    assert [sample_value(text, "jobs_queue_depth") for _, text in answers] == [1] * 5
    assert collector.calls == 1


async def test_a_late_result_is_served_by_the_next_scrape(
    served: tuple[CollectorRegistry, MetricsServer], http: aiohttp.ClientSession
) -> None:
    """A collect() that outlives its scrape is kept: the next scrape shows it at once."""
    registry, server = served
    collector = QueueDepth(hung=True)
    register_async_collector(collector, registry, min_interval=0)
    _, late = await scrape(http, server)
    assert "jobs_queue_depth" not in late and failures(late, "timeout") == 1
    collector.gate.set()
    await asyncio.wait_for(collector.collected.wait(), 5)
    _, kept = await scrape(http, server)
    assert sample_value(kept, "jobs_queue_depth") == 1
    assert collector.calls == 2  # serving a late result starts the next fetch at once
    while collector.depth < 2:  # that fetch ends (the gate is open)
        await asyncio.sleep(0.01)
    _, next_one = await scrape(http, server)  # a slow collector shows on every scrape
    newer = sample_value(next_one, "jobs_queue_depth")
    assert newer is not None and newer >= 2


async def test_a_name_filter_that_leaves_it_out_does_not_fetch(
    served: tuple[CollectorRegistry, MetricsServer], http: aiohttp.ClientSession
) -> None:
    """name[] scrapes of other families skip the collector once its families are known."""
    registry, server = served
    Gauge("other_value", "The rest.", registry=registry).set(1)
    collector = QueueDepth()
    register_async_collector(collector, registry, min_interval=0)
    await scrape(http, server)
    assert server.url is not None
    for _ in range(3):
        async with http.get(server.url, params={"name[]": "other_value"}) as response:
            assert sample_value(await response.text(), "other_value") == 1
    assert collector.calls == 1
    async with http.get(server.url, params={"name[]": "jobs_queue_depth"}) as response:
        assert sample_value(await response.text(), "jobs_queue_depth") == 2


class Impostor:
    """Returns a family named like one the service runtime already serves."""

    async def collect(self) -> Iterable[Metric]:
        return [
            GaugeMetricFamily("taken_value", "A second family of this name.", value=7),
            GaugeMetricFamily("own_value", "Its own.", value=3),
        ]


async def test_a_family_whose_name_is_taken_is_left_out_and_counted(
    served: tuple[CollectorRegistry, MetricsServer],
    http: aiohttp.ClientSession,
    log_stream: io.StringIO,
) -> None:
    """Two families of one name would be invalid: the async one is left out, counted."""
    registry, server = served
    Gauge("taken_value", "The first.", registry=registry).set(1)
    register_async_collector(Impostor(), registry)
    status, text = await scrape(http, server)
    assert status == 200
    assert text.count("# TYPE taken_value gauge") == 1
    assert sample_value(text, "taken_value") == 1 and sample_value(text, "own_value") == 3
    assert failures(text, "clash", "Impostor") == 1
    assert "another family has the name taken_value" in log_stream.getvalue()
    command = ["promtool", "check", "metrics"]
    checked = await asyncio.to_thread(
        subprocess.run, command, input=text, capture_output=True, text=True
    )
    assert "second HELP" not in checked.stdout + checked.stderr


class Twin:
    """Two async collectors of this class both return ``twin_value``; one returns it twice."""

    def __init__(self, value: float, twice: bool = False) -> None:
        self.value, self.twice = value, twice

    async def collect(self) -> Iterable[Metric]:
        families = [GaugeMetricFamily("twin_value", "Twin.", value=self.value)]
        return families * 2 if self.twice else families


async def test_async_collectors_clashing_with_each_other_keep_the_first(
    served: tuple[CollectorRegistry, MetricsServer], http: aiohttp.ClientSession
) -> None:
    """The first family of a name stays (registration order); later ones are counted clashes."""
    registry, server = served
    first, second = Twin(1, twice=True), Twin(2)
    register_async_collector(first, registry)
    register_async_collector(second, registry)
    status, text = await scrape(http, server)
    assert status == 200
    assert text.count("# TYPE twin_value gauge") == 1 and sample_value(text, "twin_value") == 1
    assert failures(text, "clash", "Twin") == 2  # its own second copy, and the other's
