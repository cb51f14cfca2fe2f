import asyncio
import time
from collections.abc import Callable, Iterator

import pytest

from bigbrotr.core import service_metrics as m
from bigbrotr.core.base_service import BaseService, BaseServiceConfig
from bigbrotr.core.timing import timed
from bigbrotr.testing import ServiceHarness


class Timed(BaseService[BaseServiceConfig]):
    """A service with timed methods and a declared histogram."""

    SERVICE_NAME = "timed"
    fetch_time = m.Histogram("timing_fetch_duration", "Time to fetch.", unit="seconds",
                             labels=["source"], buckets=[0.01, 0.1, 1.0])  # fmt: skip

    async def cleanup(self) -> int:
        return 0

    async def run(self) -> None:
        pass

    @timed("download")
    async def download(self, seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "done"

    @timed("parse")
    def parse(self, text: str) -> int:
        if not text:
            raise ValueError("empty")
        return len(text)


Make = Callable[..., ServiceHarness[Timed]]


def operation(harness: ServiceHarness[Timed], name: str, sample: str = "count") -> float | None:
    return harness.value(f"service_operation_duration_seconds_{sample}", operation=name)


async def test_async_with_and_with_observe_the_block(bigbrotr: Make) -> None:
    """``async with`` and ``with`` each observe one duration under the operation's name."""
    harness = bigbrotr(Timed)
    service = harness.service
    async with service.timed("fetch"):
        await asyncio.sleep(0.05)
    with service.timed("fetch"):
        time.sleep(0.01)  # noqa: ASYNC251 (a sync block, timed by ``with``)
    assert operation(harness, "fetch") == 2
    assert 0.06 <= (operation(harness, "fetch", "sum") or 0) < 5


async def test_a_decorated_coroutine_is_timed_until_it_returns(bigbrotr: Make) -> None:
    """Unlike prometheus_client's time(), the await is inside the timing; calls overlap fine."""
    harness = bigbrotr(Timed)
    service = harness.service
    results = await asyncio.gather(service.download(0.05), service.download(0.05))
    assert list(results) == ["done", "done"]
    assert operation(harness, "download") == 2
    assert (operation(harness, "download", "sum") or 0) >= 0.1


def test_a_decorated_function_is_timed_when_it_raises_too(bigbrotr: Make) -> None:
    """Sync methods are timed; an exception is observed and still raised."""
    harness = bigbrotr(Timed)
    service = harness.service
    assert service.parse("abc") == 3
    with pytest.raises(ValueError, match="empty"):
        service.parse("")
    assert operation(harness, "parse") == 2


async def test_timers_decorate_local_functions_and_observe_declared_histograms(
    bigbrotr: Make,
) -> None:
    """``@self.timed(...)`` on a closure, and a declared histogram's child as the target."""
    harness = bigbrotr(Timed)
    service = harness.service
    into = service.fetch_time.labels("api")

    @service.timed(into)
    async def fetch() -> int:
        await asyncio.sleep(0.02)
        return 7

    assert await fetch() == 7
    assert harness.value("timing_fetch_duration_seconds_count", source="api") == 1
    assert harness.value("timing_fetch_duration_seconds_bucket", source="api", le="0.01") == 0


async def test_with_metrics_off_timing_records_nothing(bigbrotr: Make) -> None:
    """Metrics off: the timers run the code and observe nowhere."""
    harness = bigbrotr(Timed, {"metrics": {"enabled": False}})
    async with harness.service.timed("fetch"):
        pass
    assert await harness.service.download(0) == "done"
    assert operation(harness, "fetch") is None


def test_operation_names_past_max_names_fold_into_overflow(bigbrotr: Make) -> None:
    """Operation names are bounded like gauge names: past the limit, into __overflow__."""
    harness = bigbrotr(Timed, {"metrics": {"max_names": 10}})
    service = harness.service
    for number in range(12):
        with service.timed(f"step_{number}"):
            pass
    assert operation(harness, "step_9") == 1
    assert operation(harness, "step_10") is None
    assert operation(harness, "__overflow__") == 2
    folded = harness.value(
        "service_name_overflow_updates_total", family="service_operation_duration_seconds"
    )
    assert folded == 2


def test_a_generator_function_cannot_be_timed(bigbrotr: Make) -> None:
    """Decorating a generator would time its creation only: refused, saying what to do."""
    harness = bigbrotr(Timed)

    def rows() -> Iterator[int]:
        yield 1

    with pytest.raises(TypeError, match="time the loop that consumes it"):
        harness.service.timed("rows")(rows)
