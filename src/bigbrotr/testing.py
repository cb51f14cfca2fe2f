"""A pytest plugin for testing bigbrotr services: ``pytest -p bigbrotr`` is automatic.

Installed with bigbrotr (entry point ``pytest11``, named ``bigbrotr``), it gives
a test the ``bigbrotr`` fixture: ``bigbrotr(MyService, {...config...})`` builds
the service with metrics on (port 0) and returns a ``ServiceHarness`` that

- runs N cycles on a fake clock (``run_cycles``), which the service is built
  with: ``self.clock()``, ``self.wait()``, health, readiness, the status page
  and the timestamps in gauges all follow it, so a test never sleeps;
- serves the metrics on a free port and scrapes them (``serve``, ``scrape``),
  over real HTTP, as Prometheus would;
- reads a sample by name and labels (``value``; the ``service`` label is filled in).

At the end of the test the server stops, the service's series are removed from
the registry and the async collectors it registered are unregistered, so the
next test starts from zero. The methods are
coroutines: run them in async tests (pytest-asyncio or anyio).

Examples:
    async def test_fetcher_counts_pages(bigbrotr):
        harness = bigbrotr(Fetcher, {"batch_size": 3})
        await harness.run_cycles(2)
        assert harness.value("service_counter_total", name="cycles_success") == 2
        async with harness.serve():
            scraped = await harness.scrape()
        assert scraped.value("service_counter_total", name="items_fetched") == 6
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import pytest

if TYPE_CHECKING:  # imported when used: the plugin loads in every pytest run
    from bigbrotr.core.base_service import BaseService
    from bigbrotr.core.samples import sample_value
    from bigbrotr.core.server import MetricsServer

__all__ = ["FakeClock", "Scrape", "ServiceHarness", "bigbrotr", "sample_value"]

S = TypeVar("S", bound="BaseService[Any]")


class FakeClock:
    """Time that moves only when told to, or when the service waits.

    ``now`` is the monotonic time; wall time moves with it, from ``wall`` (an
    aware datetime or Unix seconds; by default the real time when the clock
    is made), so a cron service can be started the evening before a
    daylight-saving change. A wait advances the clock by its whole timeout at
    once (shutdown still ends it first), so a test never sleeps.

    Args:
        start: The first monotonic time.
        wall_start: Unix seconds at ``start`` (the older name of ``wall``).
        wall: The wall time at ``start``: an aware ``datetime`` or Unix seconds.

    Raises:
        ValueError: ``wall`` is a naive datetime (which zone would it be in?).
    """

    def __init__(
        self,
        start: float = 1000.0,
        wall_start: float | None = None,
        *,
        wall: datetime | float | None = None,
    ) -> None:
        if isinstance(wall, datetime):
            if wall.tzinfo is None:
                raise ValueError("FakeClock(wall=...) needs an aware datetime (give tzinfo)")
            wall = wall.timestamp()
        wall = wall if wall is not None else wall_start
        self.now = self._start = start
        self._wall_start = time.time() if wall is None else wall

    def __call__(self) -> float:
        """The current fake monotonic time."""
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self.now += seconds

    def jump(self, seconds: float) -> None:
        """Move wall time only (an NTP step, a resumed VM); monotonic time stays."""
        self._wall_start += seconds

    def advance_to(self, wall: datetime | float) -> None:
        """Move time forward to the wall time ``wall`` (an aware datetime or Unix seconds)."""
        target = wall.timestamp() if isinstance(wall, datetime) else wall
        self.now += max(0.0, target - self.time())

    def monotonic(self) -> float:
        """The current fake monotonic time."""
        return self.now

    def time(self) -> float:
        """Fake Unix time, moving with ``now``."""
        return self._wall_start + (self.now - self._start)

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:  # noqa: ASYNC109
        """Time passes at once; a set ``event`` (shutdown) still ends the wait first."""
        if not event.is_set():
            self.advance(timeout)
            await asyncio.sleep(0)  # let others run, as a real wait would
        return event.is_set()


@dataclass(frozen=True)
class Scrape:
    """One scrape of the metrics endpoint."""

    status: int
    content_type: str
    text: str

    def value(self, sample_name: str, /, **labels: str) -> float | None:
        """A sample's value by name and labels (see ``sample_value``)."""
        from bigbrotr.core.samples import sample_value

        return sample_value(self.text, sample_name, **labels)


class ServiceHarness(Generic[S]):
    """A service under test, on a fake clock; see the module docstring."""

    def __init__(self, service: S, clock: FakeClock) -> None:
        self.service = service
        self.clock = clock
        self._server: MetricsServer | None = None

    async def run_cycles(self, count: int) -> list[bool]:
        """Run ``count`` cycles, the clock moved to each planned start in turn.

        With ``interval`` that is one interval from start to start (the first
        at once, unless ``run_at_start: false``); with ``schedule``, each cron
        start in its time zone, jitter included. A cycle that runs past the
        next start is followed at once, as in ``run_forever``.

        Returns:
            Whether each cycle succeeded.
        """
        outcomes = []
        for _ in range(count):
            self.clock.advance_to(self.service.next_start())
            outcomes.append(await self.service.run_cycle())
        return outcomes

    def value(self, sample_name: str, /, **labels: str) -> float | None:
        """A sample of this service from the registry (``service`` filled in), or None."""
        from prometheus_client import REGISTRY

        labels = {"service": self.service.SERVICE_NAME, **labels}
        return REGISTRY.get_sample_value(sample_name, labels)

    @contextlib.asynccontextmanager
    async def serve(self) -> AsyncIterator[str]:
        """Serve the service's metrics (and health, status page) on a free port; yields the URL."""
        from bigbrotr.core.server import MetricsServer

        config = self.service.config.metrics.model_copy(update={"port": 0})
        server = MetricsServer(config, health=self.service.health, status=self.service.status)
        await server.start()
        if server.url is None:
            raise RuntimeError("metrics are off in this service's config: nothing to serve")
        self._server = server
        try:
            yield server.url
        finally:
            self._server = None
            await server.stop()

    async def scrape(self, path: str | None = None, *, openmetrics: bool = False) -> Scrape:
        """GET the metrics (or another ``path`` on the server) while ``serve`` runs."""
        server = self._server
        if server is None or server.url is None:
            raise RuntimeError("scrape() needs the server: use it inside `async with serve()`")
        metrics_path = self.service.config.metrics.path
        url = server.url if path is None else server.url.removesuffix(metrics_path) + path
        accept = "application/openmetrics-text; version=1.0.0" if openmetrics else "text/plain"

        def get() -> Scrape:
            request = urllib.request.Request(url, headers={"Accept": accept})
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    body: bytes = response.read()
                    return Scrape(response.status, response.headers["Content-Type"], body.decode())
            except urllib.error.HTTPError as error:
                return Scrape(error.code, error.headers["Content-Type"], error.read().decode())

        return await asyncio.to_thread(get)

    def close(self) -> None:
        """Remove the service's series from the registry."""
        self.service.remove_metrics()


@pytest.fixture
def bigbrotr() -> Iterator[Callable[..., ServiceHarness[Any]]]:
    """Build services under test: ``bigbrotr(ServiceClass, config_dict, **dependencies)``.

    ``clock=FakeClock(wall=...)`` starts the service at a wall time of the
    test's choosing (a cron service the evening before a daylight-saving day).

    The config gets ``metrics: {enabled: true, port: 0}`` unless it says
    otherwise. At the end, each service's series are removed from the registry,
    and async collectors registered during the test are unregistered.
    """
    from bigbrotr.core.async_collectors import registered, unregister_async_collector

    made: list[ServiceHarness[Any]] = []
    collectors_before = {id(collector) for collector in registered()}

    def build(
        service_class: type[S],
        config: dict[str, Any] | None = None,
        *,
        clock: FakeClock | None = None,
        **dependencies: Any,
    ) -> ServiceHarness[S]:
        data = dict(config or {})
        data["metrics"] = {"enabled": True, "port": 0, **data.get("metrics", {})}
        settings = service_class.CONFIG_CLASS.model_validate(data)
        from bigbrotr.core.clock import using_clock

        clock = clock if clock is not None else FakeClock()
        with using_clock(clock):
            harness = ServiceHarness(service_class(settings, **dependencies), clock)
        made.append(harness)
        return harness

    yield build
    for harness in made:
        harness.close()
    for collector in registered():  # registered during the test: gone with it
        if id(collector) not in collectors_before:
            unregister_async_collector(collector)


def __getattr__(name: str) -> object:
    """``sample_value`` lives in ``bigbrotr.core.samples``; imported when first used.

    The plugin loads in every pytest run, so it imports nothing it does not use.
    """
    if name == "sample_value":
        from bigbrotr.core.samples import sample_value

        return sample_value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
