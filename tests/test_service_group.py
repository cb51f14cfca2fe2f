"""``ServiceGroup``: several services on one loop, one endpoint, stopped together."""

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from prometheus_client import REGISTRY

from bigbrotr.core.base_service import BaseService, BaseServiceConfig, named
from bigbrotr.core.clock import using_clock
from bigbrotr.core.metrics import MetricsConfig
from bigbrotr.core.server import MetricsServer
from bigbrotr.core.service_group import ServiceGroup
from bigbrotr.testing import FakeClock
from tests.support.services import UniqueName


class Job(BaseService[BaseServiceConfig]):
    """Sleeps ``pause`` seconds (awaiting, as a well-behaved service does), or raises."""

    SERVICE_NAME = "job"

    def __init__(self, config: BaseServiceConfig, *, pause: float = 0.0, fail: bool = False):
        super().__init__(config)
        self.pause, self.fail = pause, fail
        self.cycles = 0

    async def run(self) -> None:
        self.cycles += 1
        await asyncio.sleep(self.pause)
        if self.fail:
            raise RuntimeError("always fails")


def config(**fields: Any) -> BaseServiceConfig:
    return BaseServiceConfig(metrics={"enabled": True, "port": 0}, **fields)  # type: ignore[arg-type]


def build(name: str, settings: BaseServiceConfig, **options: Any) -> Job:
    with named(name):
        return Job(settings, **options)


async def test_a_slow_or_failing_service_never_delays_anothers_starts(
    unique_name: UniqueName,
) -> None:
    """While one cycle awaits for 1 s and another service fails every cycle, a third keeps time."""
    slow = build(unique_name("slow"), config(interval=0.05, loop_block_threshold=0), pause=1.0)
    failing = build(
        unique_name("failing"),
        config(interval=0.05, max_consecutive_failures=0, loop_block_threshold=0),
        fail=True,
    )
    steady = build(unique_name("steady"), config(interval=0.05, loop_block_threshold=0))
    group = ServiceGroup([slow, failing, steady])
    async with group:
        running = asyncio.create_task(group.run_forever())
        while slow.cycles < 2:  # the first slow cycle ended (after 1 s)
            await asyncio.sleep(0.01)
        during_the_slow_cycle = steady.cycles
        group.request_shutdown()
        assert await asyncio.wait_for(running, 10) is None
    assert during_the_slow_cycle >= 8  # every 50 ms for a second: 20 when nothing else runs
    assert failing.cycles >= 8
    steady_name = steady.SERVICE_NAME
    get = REGISTRY.get_sample_value
    assert get("service_counter_total", {"service": steady_name, "name": "cycles_failed"}) == 0
    failed = get(
        "service_counter_total", {"service": failing.SERVICE_NAME, "name": "cycles_failed"}
    )
    assert failed == failing.cycles


async def test_a_service_at_its_failure_limit_stops_the_others_within_their_grace(
    unique_name: UniqueName,
) -> None:
    """The failing one is named; a cycle in progress elsewhere finishes (shutdown_grace)."""
    failing = build(
        unique_name("failing"),
        config(interval=0.01, max_consecutive_failures=3, loop_block_threshold=0),
        fail=True,
    )
    busy = build(unique_name("busy"), config(interval=0.01, loop_block_threshold=0), pause=0.3)
    group = ServiceGroup([busy, failing])
    async with group:
        stopped_by = await asyncio.wait_for(group.run_forever(), 10)
    assert stopped_by is failing
    get = REGISTRY.get_sample_value
    labels = {"service": busy.SERVICE_NAME, "name": "cycles_success"}
    assert get("service_counter_total", labels) == busy.cycles  # its cycle ended, not cut
    assert not busy.is_running and not failing.is_running


def test_services_need_names_of_their_own(unique_name: UniqueName) -> None:
    """Two with one name would mix their series; none is no group."""
    name = unique_name()
    with pytest.raises(ValueError, match=f"two services named '{name}'"):
        ServiceGroup([build(name, config()), build(name, config())])
    with pytest.raises(ValueError, match="at least one service"):
        ServiceGroup([])


async def test_service_info_carries_every_service_of_the_process(
    unique_name: UniqueName,
) -> None:
    """A second service's service_info no longer replaces the first's."""
    first, second = build(unique_name(), config()), build(unique_name(), config())
    async with ServiceGroup([first, second]):
        pass
    for service in (first, second):
        labels = {
            "service": service.SERVICE_NAME,
            "version": "unknown",
            "bigbrotr_version": "0.1.0",
        }
        assert REGISTRY.get_sample_value("service_info", labels) == 1


async def test_one_endpoint_is_ready_only_when_every_service_is(
    unique_name: UniqueName, http: aiohttp.ClientSession
) -> None:
    """/readyz names each service's checks; the status page and JSON have one part each."""
    clock = FakeClock()
    with using_clock(clock):
        fresh = build(unique_name("fresh"), config(stale_after=1000))
        stale = build(unique_name("stale"), config(stale_after=10))
    group = ServiceGroup([fresh, stale])
    server = MetricsServer(
        MetricsConfig(enabled=True, port=0), health=group.health, status=group.status
    )
    await server.start()
    assert server.url is not None
    base = server.url.removesuffix("/metrics")
    try:
        async with http.get(f"{base}/readyz") as response:
            assert response.status == 200
        clock.advance(60)  # no success yet: one service is past its stale_after
        async with http.get(f"{base}/readyz?verbose") as response:
            text = await response.text()
            assert response.status == 503
        assert f"[+]{fresh.SERVICE_NAME}: freshness ok" in text
        assert f"[-]{stale.SERVICE_NAME}: freshness failed: start, no success yet," in text
        async with http.get(f"{base}/healthz") as response:
            assert response.status == 200  # alive: the loop runs
        async with http.get(f"{base}/status.json") as response:
            status = json.loads(await response.text())
        assert status["ready"] is False and status["alive"] is True
        states = {each["service"]: each["state"] for each in status["services"]}
        assert states == {fresh.SERVICE_NAME: "ready", stale.SERVICE_NAME: "not_ready"}
        async with http.get(f"{base}/") as response:
            page = await response.text()
        assert page.count('class="service" data-service=') == 2
        assert '<main data-state="not_ready">' in page  # the worst of them
    finally:
        await server.stop()
