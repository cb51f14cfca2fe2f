import asyncio
import time

import pytest
from prometheus_client import REGISTRY

from bigbrotr.core.base_service import BaseService, BaseServiceConfig
from bigbrotr.core.clock import SYSTEM_CLOCK, SystemClock, current_clock, using_clock
from bigbrotr.testing import FakeClock
from tests.support.services import MetricsOn, UniqueName


def test_the_system_clock_reads_the_system_time() -> None:
    """monotonic() is time.monotonic() and time() is time.time(), read now."""
    clock = SystemClock()
    before = (time.monotonic(), time.time())
    read = (clock.monotonic(), clock.time())
    after = (time.monotonic(), time.time())
    assert before[0] <= read[0] <= after[0]
    assert before[1] <= read[1] <= after[1]


async def test_the_system_clock_waits_until_the_timeout_or_the_event() -> None:
    """wait() is False after its timeout, True at once for a set event or one set meanwhile."""
    clock, event = SystemClock(), asyncio.Event()
    started = time.monotonic()
    assert await clock.wait(event, 0.05) is False
    assert time.monotonic() - started >= 0.049  # asyncio may wake within its resolution
    waiting = asyncio.create_task(clock.wait(event, 3600))
    await asyncio.sleep(0)  # the wait begins
    event.set()
    assert await asyncio.wait_for(waiting, 5) is True
    assert await asyncio.wait_for(clock.wait(event, 3600), 5) is True


def test_outside_any_block_the_current_clock_is_the_systems() -> None:
    """Without using_clock, services take SYSTEM_CLOCK, a SystemClock."""
    assert current_clock() is SYSTEM_CLOCK
    assert isinstance(SYSTEM_CLOCK, SystemClock)


def test_using_clock_nests_and_restores_the_previous_clock() -> None:
    """Each block sets its clock and yields it; leaving it restores the one before."""
    outer, inner = FakeClock(), FakeClock()
    with using_clock(outer) as given:
        assert given is outer and current_clock() is outer
        with using_clock(inner):
            assert current_clock() is inner
        assert current_clock() is outer
    assert current_clock() is SYSTEM_CLOCK


def test_using_clock_restores_the_clock_when_the_block_raises() -> None:
    """An exception in the block does not leave its clock current."""
    with pytest.raises(RuntimeError, match="inside"), using_clock(FakeClock()):
        raise RuntimeError("inside")
    assert current_clock() is SYSTEM_CLOCK


class Quiet(BaseService[BaseServiceConfig]):
    """Succeeds at once."""

    SERVICE_NAME = "quiet_clock"

    async def cleanup(self) -> int:
        return 0

    async def run(self) -> None:
        pass


def gauge(service: BaseService[BaseServiceConfig], name: str) -> float | None:
    labels = {"service": service.SERVICE_NAME, "name": name}
    return REGISTRY.get_sample_value("service_gauge", labels)


async def test_a_service_built_in_the_block_reads_that_clock_everywhere(
    unique_name: UniqueName, metrics_on: MetricsOn
) -> None:
    """Health, status, gauges, records, clock() and wait() follow the clock it was built with."""
    clock = FakeClock(start=500.0, wall_start=1_600_000_000.0)
    cls: type[Quiet] = type("Clocked", (Quiet,), {"SERVICE_NAME": unique_name("clocked")})
    with using_clock(clock):
        service = cls(metrics_on())
    async with service:
        assert gauge(service, "start_timestamp") == 1_600_000_000.0
        assert (service.health().started_at, service.health().now) == (500.0, 500.0)
        clock.advance(7)
        assert service.clock() == 507.0
        assert (service.health().now, service.status().now) == (507.0, 1_600_000_007.0)
        assert await service.run_cycle() is True
        assert gauge(service, "last_cycle_timestamp") == 1_600_000_007.0
        assert service.status().recent[-1].ended_at == 1_600_000_007.0
        assert service.health().last_success_at == 507.0
        assert await service.wait(3600) is False  # the fake clock's wait: no sleeping
        assert service.clock() == 4107.0
    service.remove_metrics()


def test_a_service_built_after_the_block_reads_the_system_clock() -> None:
    """The clock is taken when the service is built, not when the block was."""
    with using_clock(FakeClock(start=5.0)):
        pass
    before = time.monotonic()
    service = Quiet()
    assert before <= service.clock() <= time.monotonic()


async def test_a_subclass_that_overrides_clock_keeps_its_say(unique_name: UniqueName) -> None:
    """Overriding clock() (the old way to fake time) still drives durations and health."""

    class OwnTime(BaseService[BaseServiceConfig]):
        SERVICE_NAME = unique_name()
        now = 100.0

        def clock(self) -> float:
            return self.now

        async def run(self) -> None:
            self.now += 500

    service = OwnTime()
    assert await service.run_cycle() is True
    assert service.status().recent[-1].duration == 500
    assert service.health().now == 600
