import asyncio
import random
import threading
import urllib.request
from pathlib import Path

from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from bigbrotr.core.base_service import BaseService, BaseServiceConfig
from bigbrotr.core.metrics import MetricsConfig
from bigbrotr.core.server import MetricsServer
from tests.support.logs import CapturedLogs
from tests.support.services import UniqueName

CYCLES = 3000
WARM_UP = 500


def rss_bytes() -> int:
    """This process's resident memory."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class Flaky(BaseService[BaseServiceConfig]):
    """Fails about a third of its cycles, with one of three exception types."""

    SERVICE_NAME = "flaky"

    def __init__(self, config: BaseServiceConfig) -> None:
        super().__init__(config)
        self.random = random.Random(7)

    async def cleanup(self) -> int:
        return 0

    async def run(self) -> None:
        roll = self.random.random()
        self.inc_counter("work_items", 3)
        if roll < 0.1:
            raise ValueError("bad input")
        if roll < 0.2:
            raise KeyError("missing")
        if roll < 0.33:
            raise RuntimeError(f"upstream returned {self.random.randint(500, 504)}")


def scrape_until(url: str, stop: threading.Event, results: list[int], errors: list[str]) -> None:
    """Scrape and parse ``url`` until told to stop; record series counts and failures."""
    while not stop.is_set():
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                text = response.read().decode()
            results.append(
                sum(len(family.samples) for family in text_string_to_metric_families(text))
            )
        except Exception as exc:  # every failure is a finding, reported by the test
            errors.append(f"{type(exc).__name__}: {exc}")


async def test_thousands_of_flaky_cycles_while_scraped_lose_nothing(
    unique_name: UniqueName, captured_logs: CapturedLogs
) -> None:
    """Every cycle is counted exactly, every scrape parses, and memory stays flat."""
    cls: type[Flaky] = type("Soak", (Flaky,), {"SERVICE_NAME": unique_name("soak")})
    service = cls(
        BaseServiceConfig(max_consecutive_failures=0, metrics=MetricsConfig(enabled=True))
    )
    server = MetricsServer(MetricsConfig(enabled=True, port=0))
    await server.start()
    assert server.url is not None
    stop, scrapes, errors = threading.Event(), list[int](), list[str]()
    scraper = threading.Thread(target=scrape_until, args=(server.url, stop, scrapes, errors))
    outcomes = []
    with captured_logs(cls.SERVICE_NAME, level="CRITICAL"):
        async with service:
            scraper.start()
            before = 0
            for index in range(CYCLES):
                if index == WARM_UP:
                    before = rss_bytes()
                outcomes.append(await service.run_cycle())
                if index % 10 == 0:  # the loop waits between cycles, as a schedule does
                    await asyncio.sleep(0.002)
            after = rss_bytes()
    stop.set()
    await asyncio.to_thread(scraper.join, 10)
    await server.stop()
    labels = {"service": cls.SERVICE_NAME}

    def count(name: str) -> float:
        return REGISTRY.get_sample_value("service_counter_total", {**labels, "name": name}) or 0

    assert count("cycles_success") + count("cycles_failed") == CYCLES
    assert count("cycles_success") == outcomes.count(True)
    assert count("errors_ValueError") + count("errors_KeyError") + count(
        "errors_RuntimeError"
    ) == outcomes.count(False)
    assert count("work_items") == 3 * CYCLES
    assert errors == []
    assert len(scrapes) >= 20
    assert after - before < 5 * 2**20, f"RSS grew {(after - before) / 2**20:.1f} MiB"
