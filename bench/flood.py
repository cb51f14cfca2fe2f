"""Cycles a service keeps while its metrics port is flooded (wrk, 1000 connections).

A service due a cycle every 100 ms runs for ``SECONDS`` while wrk (another
process) holds 1000 connections against its metrics endpoint. Compared in the
same run: bigbrotr's ``MetricsServer`` (its own thread and loop, a connection
limit) and the usual exporter, an aiohttp handler on the service's own loop.
Target: at least 90% of the cycles that were due.

Then the same service with an async collector of 20,000 samples (built on the
service's loop at each fetch) under wrk -c20: fetches shared for
``min_interval`` (1 s, the default) against a fetch on every scrape
(``min_interval=0``, what every scrape cost before).
"""

from __future__ import annotations

import asyncio
import re
import resource
import shutil
import sys
from collections.abc import Awaitable, Callable

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily

from _workload import build_registry, seed_style_app, serve_app
from bigbrotr.core.base_service import BaseService, BaseServiceConfig
from bigbrotr.core.logger import configure_logging
from bigbrotr.core.metrics import (
    MetricsConfig,
    register_async_collector,
    unregister_async_collector,
)
from bigbrotr.core.server import MetricsServer

SECONDS = 10
INTERVAL = 0.1
CONNECTIONS = 1000
COLLECTOR_SAMPLES = 20_000
COLLECTOR_CONNECTIONS = 20


class Inventory:
    """An async collector of many samples, built on the service's loop at each fetch."""

    async def collect(self) -> list[GaugeMetricFamily]:
        """One family of ``COLLECTOR_SAMPLES`` samples, made now."""
        family = GaugeMetricFamily("inventory_items", "Items per shelf.", labels=["shelf"])
        for shelf in range(COLLECTOR_SAMPLES):
            family.add_metric([str(shelf)], shelf)
        return [family]


class Ticker(BaseService[BaseServiceConfig]):
    """A service whose cycle is a little CPU work, counted."""

    SERVICE_NAME = "ticker"

    def __init__(self, config: BaseServiceConfig) -> None:
        super().__init__(config)
        self.cycles = 0

    async def cleanup(self) -> int:
        """Nothing to clean."""
        return 0

    async def run(self) -> None:
        """A millisecond or so of work."""
        sum(range(20_000))
        self.cycles += 1


async def flood(url: str, connections: int = CONNECTIONS) -> str:
    process = await asyncio.create_subprocess_exec(
        "wrk", "-t2", f"-c{connections}", f"-d{SECONDS}s", url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await process.communicate()
    found = re.search(r"Requests/sec:\s+([\d.]+)", out.decode())
    return found.group(1) if found else "?"


async def cycles_kept(
    start: Callable[[], Awaitable[tuple[str, Callable[[], Awaitable[object]]]]],
    connections: int = CONNECTIONS,
) -> tuple[float, str]:
    url, stop = await start()
    service = Ticker(BaseServiceConfig(interval=INTERVAL, loop_block_threshold=0))
    runner = asyncio.create_task(service.run_forever())
    rate = await flood(url, connections)
    service.request_shutdown()
    await runner
    await stop()
    return service.cycles / (SECONDS / INTERVAL), rate


async def main() -> None:
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: run `make bench`, which installs it")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4096)), hard))
    configure_logging("ticker", "WARNING")
    registry, _ = build_registry(50)

    async def ours() -> tuple[str, Callable[[], Awaitable[object]]]:
        server = MetricsServer(MetricsConfig(enabled=True, port=0), registry)
        await server.start()
        assert server.url is not None
        return server.url, server.stop

    async def on_the_loop() -> tuple[str, Callable[[], Awaitable[object]]]:
        runner, url = await serve_app(seed_style_app(registry))
        return url, runner.cleanup

    print(f"{SECONDS} s, a cycle due every {INTERVAL * 1000:.0f} ms, wrk -c{CONNECTIONS}")
    print(f"{'server':<38} {'cycles kept':>11} {'wrk req/s':>10}")
    for name, start in [
        ("bigbrotr MetricsServer", ours),
        ("aiohttp handler on the loop", on_the_loop),
    ]:
        kept, rate = await cycles_kept(start)
        verdict = (
            f"  (target >= 90%: {'met' if kept >= 0.9 else 'NOT met'})" if start is ours else ""
        )
        print(f"{name:<38} {kept:>10.0%} {rate:>10}{verdict}")

    print(f"\nthe same, wrk -c{COLLECTOR_CONNECTIONS}, an async collector of "
          f"{COLLECTOR_SAMPLES} samples on the service's loop")  # fmt: skip
    print(f"{'collector':<38} {'cycles kept':>11} {'wrk req/s':>10}")
    kept_by: dict[float, float] = {}
    for name, interval in [
        ("fetch shared for 1 s (the default)", 1.0),
        ("fetch on every scrape", 0.0),
    ]:
        with_collector = CollectorRegistry()
        collector = Inventory()
        register_async_collector(collector, with_collector, min_interval=interval)

        async def served() -> tuple[str, Callable[[], Awaitable[object]]]:
            server = MetricsServer(MetricsConfig(enabled=True, port=0), with_collector)  # noqa: B023
            await server.start()
            assert server.url is not None
            return server.url, server.stop

        kept, rate = await cycles_kept(served, COLLECTOR_CONNECTIONS)
        unregister_async_collector(collector, with_collector)
        kept_by[interval] = kept
        print(f"{name:<38} {kept:>10.0%} {rate:>10}")
    print(f"cycles kept: shared / every scrape = {kept_by[1.0] / max(kept_by[0.0], 0.01):.1f}x")


if __name__ == "__main__":
    asyncio.run(main())
