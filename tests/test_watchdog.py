import asyncio
import io
import json
import threading
import time

from prometheus_client import REGISTRY

from bigbrotr.core.base_service import BaseService, BaseServiceConfig
from bigbrotr.core.metrics import MetricsConfig
from bigbrotr.core.watchdog import LoopWatchdog
from tests.support.services import UniqueName


def logged(stream: io.StringIO, event: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    return [line for line in lines if line["event"] == event]


def block_the_loop(seconds: float) -> None:
    """What a buggy service does: a blocking call on the event loop."""
    time.sleep(seconds)


async def test_a_blocked_loop_is_reported_once_with_where(log_stream: io.StringIO) -> None:
    """One WARNING per block names the blocking line; the lag is measured; recovery logged."""
    lags: list[float] = []
    watchdog = LoopWatchdog(
        asyncio.get_running_loop(), threshold=0.1, observe=lags.append, interval=0.02
    )
    watchdog.start()
    while len(lags) < 3:  # a few prompt probes before the block
        await asyncio.sleep(0.01)
    during: list[float] = []  # what the status page reads, from another thread, mid-block
    peek = threading.Timer(0.35, lambda: during.append(watchdog.lag()))
    peek.start()
    block_the_loop(0.5)
    peek.join()
    assert during[0] >= 0.25
    while not logged(log_stream, "event loop runs again"):
        await asyncio.sleep(0.02)
    watchdog.stop()
    warnings = logged(log_stream, "event loop blocked")
    assert len(warnings) == 1
    assert "in block_the_loop" in str(warnings[0]["where"])
    assert "time.sleep(seconds)" in str(warnings[0]["stack"])
    assert max(lags) >= 0.4
    assert sorted(lags)[len(lags) // 2] < 0.1  # the probes around the block were prompt


async def test_a_free_loop_is_measured_and_not_reported(log_stream: io.StringIO) -> None:
    """A loop that is never blocked gets small lags and no warning."""
    lags: list[float] = []
    watchdog = LoopWatchdog(
        asyncio.get_running_loop(), threshold=0.2, observe=lags.append, interval=0.01
    )
    watchdog.start()
    while len(lags) < 5:
        await asyncio.sleep(0.01)
    assert watchdog.lag() < 0.2
    watchdog.stop()
    assert max(lags) < 0.2
    assert not logged(log_stream, "event loop blocked")
    assert not [t for t in threading.enumerate() if t.name == "bigbrotr-watchdog"]


class BlockingService(BaseService[BaseServiceConfig]):
    """A service whose one cycle blocks the event loop, between prompt probes of the watchdog."""

    SERVICE_NAME = "blocking"

    async def cleanup(self) -> int:
        return 0

    async def run(self) -> None:
        await self.probes(2)  # let the watchdog take a few prompt measurements first
        block_the_loop(1.2)
        await self.probes(3)  # and see the loop run again: the probe sent during the block
        self.request_shutdown()

    async def probes(self, count: int) -> None:
        """Wait until the watchdog has measured the loop ``count`` times (at once without one)."""
        if not self.config.loop_block_threshold:
            return
        labels = {"service": self.SERVICE_NAME}
        while (REGISTRY.get_sample_value("event_loop_lag_seconds_count", labels) or 0) < count:
            await asyncio.sleep(0.01)


async def test_services_export_their_loop_lag(
    unique_name: UniqueName, log_stream: io.StringIO
) -> None:
    """run_forever watches its loop: event_loop_lag_seconds is exported, the block logged."""
    cls: type[BlockingService] = type("B", (BlockingService,), {"SERVICE_NAME": unique_name("b")})
    config = BaseServiceConfig(metrics=MetricsConfig(enabled=True), loop_block_threshold=0.5)
    await cls(config).run_forever()
    labels = {"service": cls.SERVICE_NAME}
    assert (REGISTRY.get_sample_value("event_loop_lag_seconds_count", labels) or 0) >= 3
    assert (REGISTRY.get_sample_value("event_loop_lag_seconds_sum", labels) or 0) >= 1.0
    assert len(logged(log_stream, "event loop blocked")) == 1
    assert not [t for t in threading.enumerate() if t.name == "bigbrotr-watchdog"]


async def test_threshold_zero_turns_the_watchdog_off(unique_name: UniqueName) -> None:
    """loop_block_threshold: 0 starts no watchdog and exports no lag."""
    cls: type[BlockingService] = type("B", (BlockingService,), {"SERVICE_NAME": unique_name("o")})
    config = BaseServiceConfig(metrics=MetricsConfig(enabled=True), loop_block_threshold=0)
    await cls(config).run_forever()
    count = REGISTRY.get_sample_value("event_loop_lag_seconds_count", {"service": cls.SERVICE_NAME})
    assert count is None
