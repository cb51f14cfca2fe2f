import json
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from bigbrotr.core import service_metrics as m
from bigbrotr.core.base_service import BaseService, BaseServiceConfig
from bigbrotr.testing import FakeClock, ServiceHarness, sample_value

Make = Callable[..., ServiceHarness[Any]]


class Waiter(BaseService[BaseServiceConfig]):
    """Waits inside each cycle, counts pages, fails on the third cycle."""

    SERVICE_NAME = "waiter"
    pages = m.Counter("waiter_pages", "Pages seen.", labels=["kind"])

    def __init__(self, config: BaseServiceConfig | None = None) -> None:
        super().__init__(config)
        self.cycles = 0
        self.seen_at: list[float] = []

    async def cleanup(self) -> int:
        return 0

    async def run(self) -> None:
        self.cycles += 1
        self.seen_at.append(self.clock())
        await self.wait(30)  # a real service would pause here; the harness does not
        self.pages.labels("html").inc(2)
        if self.cycles == 3:
            raise RuntimeError("third time")


async def test_cycles_run_on_the_fake_clock(bigbrotr: Make) -> None:
    """N cycles run at once: waits move the fake clock, cycles start an interval apart."""
    harness = bigbrotr(Waiter, {"interval": 60})
    assert await harness.run_cycles(4) == [True, True, False, True]
    service = harness.service
    assert [t - service.seen_at[0] for t in service.seen_at] == [0, 60, 120, 180]
    assert harness.value("service_counter_total", name="cycles_success") == 3
    assert harness.value("waiter_pages_total", kind="html") == 8


async def test_serve_and_scrape_over_http(bigbrotr: Make) -> None:
    """The harness serves on a free port; scrapes read metrics, health and status."""
    harness = bigbrotr(Waiter, {"interval": 5})
    await harness.run_cycles(1)
    async with harness.serve() as url:
        assert url.startswith("http://127.0.0.1:")
        scraped = await harness.scrape()
        openmetrics = await harness.scrape(openmetrics=True)
        ready = await harness.scrape("/readyz")
        status = await harness.scrape("/status.json")
    assert scraped.status == 200 and scraped.content_type.startswith("text/plain")
    labels = {"service": "waiter", "name": "cycles_success"}
    assert scraped.value("service_counter_total", **labels) == 1
    assert openmetrics.content_type.startswith("application/openmetrics-text")
    assert openmetrics.value("service_counter_total", **labels) == 1
    assert (ready.status, ready.text) == (200, "ok\n")
    assert json.loads(status.text)["cycles_succeeded"] == 1


async def test_readiness_follows_the_fake_clock(bigbrotr: Make) -> None:
    """/readyz turns 503 once stale_after passes without a success, and 200 after one."""
    harness = bigbrotr(Waiter, {"interval": 10, "stale_after": 30})
    await harness.run_cycles(1)
    async with harness.serve():
        assert (await harness.scrape("/readyz")).status == 200
        harness.clock.advance(31)  # no sleep: the service reads the fake clock
        stale = await harness.scrape("/readyz?verbose")
        await harness.run_cycles(1)
        fresh = await harness.scrape("/readyz")
    assert stale.status == 503
    assert "[-]freshness failed: last successful cycle" in stale.text
    assert fresh.status == 200


async def test_each_test_starts_from_zero(bigbrotr: Make) -> None:
    """A closed harness removes its service's series: the next one counts from zero."""
    first = bigbrotr(Waiter)
    await first.run_cycles(2)
    first.close()
    assert first.value("service_counter_total", name="cycles_success") is None
    assert first.value("waiter_pages_total", kind="html") is None
    second = bigbrotr(Waiter)
    await second.run_cycles(1)
    assert second.value("service_counter_total", name="cycles_success") == 1
    assert second.value("waiter_pages_total", kind="html") == 2


def test_sample_value_matches_by_name_and_labels() -> None:
    """The helper finds a sample by its labels, or says None."""
    text = 'jobs_total{queue="a"} 3.0\njobs_total{queue="b"} 5.0\n'
    assert sample_value(text, "jobs_total", queue="b") == 5
    assert sample_value(text, "jobs_total", queue="c") is None
    clock = FakeClock(10)
    clock.advance(2.5)
    assert clock() == 12.5


def test_the_plugin_loads_nothing_until_a_test_uses_it() -> None:
    """Installed, the plugin loads in every pytest run: it must not import bigbrotr's core."""
    code = "import sys, bigbrotr.testing; print(sorted(m for m in sys.modules if 'bigbrotr.' in m))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "['bigbrotr.testing']", done.stdout + done.stderr


USER_TESTS = """
from bigbrotr.core.async_collectors import registered
from bigbrotr.core.base_service import BaseService, BaseServiceConfig
from bigbrotr.core.metrics import register_async_collector


class Quiet(BaseService[BaseServiceConfig]):
    SERVICE_NAME = "quiet"

    async def cleanup(self):
        return 0

    async def run(self):
        pass


class Depth:
    async def collect(self):
        return []


async def test_one_registers_a_collector(bigbrotr):
    bigbrotr(Quiet)
    register_async_collector(Depth())
    assert len(registered()) == 1


def test_the_next_starts_without_it():
    assert registered() == []
"""


def test_collectors_registered_in_a_test_are_gone_after_it(tmp_path: Path) -> None:
    """The fixture unregisters the async collectors a test registered (a real pytest run)."""
    (tmp_path / "test_user.py").write_text(USER_TESTS)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o",
         "asyncio_mode=auto", "test_user.py"],
        cwd=tmp_path, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout


class Nightly(BaseService[BaseServiceConfig]):
    """A nightly job; each cycle takes no time."""

    SERVICE_NAME = "nightly"

    async def run(self) -> None:
        pass


async def test_a_cron_service_crosses_a_daylight_saving_change_without_sleeping(
    bigbrotr: Make,
) -> None:
    """The evening before the clocks go forward: 02:30 does not exist, the job still runs once."""
    berlin = ZoneInfo("Europe/Berlin")
    clock = FakeClock(wall=datetime(2026, 3, 28, 21, 0, tzinfo=berlin))
    config = {"schedule": "30 2 * * *", "timezone": "Europe/Berlin"}
    harness = bigbrotr(Nightly, config, clock=clock)
    started = []
    for _ in range(3):
        assert await harness.run_cycles(1) == [True]
        started.append(datetime.fromtimestamp(clock.time(), berlin).isoformat())
    assert started == [
        "2026-03-29T03:00:00+02:00",  # 02:00-03:00 does not exist that day: once, at 03:00
        "2026-03-30T02:30:00+02:00",
        "2026-03-31T02:30:00+02:00",
    ]
    assert harness.value("service_counter_total", name="cycles_success") == 3
    assert harness.value("service_counter_total", name="cycles_skipped") == 0
    tomorrow = datetime(2026, 4, 1, 2, 30, tzinfo=berlin).timestamp()
    assert harness.value("service_gauge", name="next_cycle_timestamp") == tomorrow
    async with harness.serve():
        assert (await harness.scrape("/readyz")).status == 200  # a daily job is not stale
        status = json.loads((await harness.scrape("/status.json")).text)
    assert status["schedule"] == "30 2 * * * (Europe/Berlin)"
    assert status["next_cycle_timestamp"] == tomorrow
