import asyncio
import time

import pytest
from prometheus_client import REGISTRY

from bigbrotr.core import service_metrics as m
from bigbrotr.core.base_service import BaseService, BaseServiceConfig
from bigbrotr.core.timing import timed
from tests.conftest import unique_name


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


def fresh(max_names: int = 1000) -> Timed:
    cls = type("T", (Timed,), {"SERVICE_NAME": unique_name("timed")})
    metrics = {"enabled": True, "port": 0, "max_names": max_names}
    service: Timed = cls(BaseServiceConfig(metrics=metrics))  # type: ignore[arg-type]
    return service


def operation(service: Timed, name: str, sample: str = "count") -> float | None:
    labels = {"service": service.SERVICE_NAME, "operation": name}
    return REGISTRY.get_sample_value(f"service_operation_duration_seconds_{sample}", labels)


async def test_async_with_and_with_observe_the_block() -> None:
    """``async with`` and ``with`` each observe one duration under the operation's name."""
    service = fresh()
    async with service.timed("fetch"):
        await asyncio.sleep(0.05)
    with service.timed("fetch"):
        time.sleep(0.01)  # noqa: ASYNC251 (a sync block, timed by ``with``)
    assert operation(service, "fetch") == 2
    assert 0.06 <= (operation(service, "fetch", "sum") or 0) < 5


async def test_a_decorated_coroutine_is_timed_until_it_returns() -> None:
    """Unlike prometheus_client's time(), the await is inside the timing; calls overlap fine."""
    service = fresh()
    results = await asyncio.gather(service.download(0.05), service.download(0.05))
    assert list(results) == ["done", "done"]
    assert operation(service, "download") == 2
    assert (operation(service, "download", "sum") or 0) >= 0.1


def test_a_decorated_function_is_timed_when_it_raises_too() -> None:
    """Sync methods are timed; an exception is observed and still raised."""
    service = fresh()
    assert service.parse("abc") == 3
    with pytest.raises(ValueError, match="empty"):
        service.parse("")
    assert operation(service, "parse") == 2


async def test_timers_decorate_local_functions_and_observe_declared_histograms() -> None:
    """``@self.timed(...)`` on a closure, and a declared histogram's child as the target."""
    service = fresh()
    into = service.fetch_time.labels("api")

    @service.timed(into)
    async def fetch() -> int:
        await asyncio.sleep(0.02)
        return 7

    assert await fetch() == 7
    labels = {"service": service.SERVICE_NAME, "source": "api"}
    assert REGISTRY.get_sample_value("timing_fetch_duration_seconds_count", labels) == 1
    fastest = labels | {"le": "0.01"}
    assert REGISTRY.get_sample_value("timing_fetch_duration_seconds_bucket", fastest) == 0


async def test_with_metrics_off_timing_records_nothing() -> None:
    """Metrics off: the timers run the code and observe nowhere."""
    cls = type("Off", (Timed,), {"SERVICE_NAME": unique_name("off")})
    service = cls(BaseServiceConfig())
    async with service.timed("fetch"):
        pass
    assert await service.download(0) == "done"
    assert operation(service, "fetch") is None


def test_operation_names_past_max_names_fold_into_overflow() -> None:
    """Operation names are bounded like gauge names: past the limit, into __overflow__."""
    service = fresh(max_names=10)
    for number in range(12):
        with service.timed(f"step_{number}"):
            pass
    assert operation(service, "step_9") == 1
    assert operation(service, "step_10") is None
    assert operation(service, "__overflow__") == 2
    folded = {"service": service.SERVICE_NAME, "family": "service_operation_duration_seconds"}
    assert REGISTRY.get_sample_value("service_name_overflow_updates_total", folded) == 2
