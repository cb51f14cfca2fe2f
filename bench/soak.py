"""A longer soak: flaky cycles as fast as a schedule allows, scraped continuously.

Runs ``SECONDS`` of cycles (a third fail, with three exception types) on a
service whose metrics are scraped and parsed without pause by another thread,
and prints what ``make test``'s short soak asserts: cycles run against cycles
counted, scrapes parsed and failed, and resident memory after a warm-up.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
import urllib.request

from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from _workload import rss
from bigbrotr.core.base_service import BaseService, BaseServiceConfig
from bigbrotr.core.logger import configure_logging
from bigbrotr.core.metrics import MetricsConfig
from bigbrotr.core.server import MetricsServer

SECONDS = 30.0
WARM_UP = 3.0


class Flaky(BaseService[BaseServiceConfig]):
    """Fails about a third of its cycles."""

    SERVICE_NAME = "soak"

    def __init__(self, config: BaseServiceConfig) -> None:
        super().__init__(config)
        self.random = random.Random(7)

    async def cleanup(self) -> int:
        """Nothing to clean."""
        return 0

    async def run(self) -> None:
        """Count some work; fail a third of the time."""
        self.inc_counter("work_items", 3)
        roll = self.random.random()
        if roll < 0.33:
            raise [ValueError, KeyError, RuntimeError][int(roll * 9) % 3]("soak failure")


def scrape(url: str, stop: threading.Event, tally: dict[str, int]) -> None:
    while not stop.is_set():
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                list(text_string_to_metric_families(response.read().decode()))
            tally["parsed"] += 1
        except Exception:  # counted and printed
            tally["failed"] += 1


async def main() -> None:
    configure_logging("soak", "CRITICAL")
    service = Flaky(
        BaseServiceConfig(max_consecutive_failures=0, metrics=MetricsConfig(enabled=True))
    )
    server = MetricsServer(MetricsConfig(enabled=True, port=0))
    await server.start()
    assert server.url is not None
    stop, tally = threading.Event(), {"parsed": 0, "failed": 0}
    scraper = threading.Thread(target=scrape, args=(server.url, stop, tally))
    scraper.start()
    cycles, start = 0, time.monotonic()
    before = None
    async with service:
        while time.monotonic() - start < SECONDS:
            await service.run_cycle()
            cycles += 1
            if before is None and time.monotonic() - start > WARM_UP:
                before = rss() / 2**20
            if cycles % 10 == 0:
                await asyncio.sleep(0.002)
    after = rss() / 2**20
    stop.set()
    scraper.join()
    await server.stop()

    def count(name: str) -> float:
        labels = {"service": "soak", "name": name}
        return REGISTRY.get_sample_value("service_counter_total", labels) or 0

    counted = count("cycles_success") + count("cycles_failed")
    print(
        f"{SECONDS:.0f} s: {cycles} cycles run, {counted:.0f} counted "
        f"({'exact' if counted == cycles else 'MISMATCH'}), {count('cycles_failed'):.0f} failed"
    )
    print(f"scrapes: {tally['parsed']} parsed, {tally['failed']} failed")
    print(f"RSS after {WARM_UP:.0f} s warm-up: {before:.1f} MiB -> {after:.1f} MiB "
          f"({after - (before or after):+.1f} MiB)")  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
