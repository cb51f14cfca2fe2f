"""Cycles a service keeps while its metrics port is flooded (wrk, 1000 connections).

A service due a cycle every 100 ms runs for ``SECONDS`` while wrk (another
process) holds 1000 connections against its metrics endpoint. Compared in the
same run: bigbrotr's ``MetricsServer`` (its own thread and loop, a connection
limit) and the usual exporter, an aiohttp handler on the service's own loop.
Target: at least 90% of the cycles that were due.
"""

from __future__ import annotations

import asyncio
import re
import resource
import shutil
import sys
from collections.abc import Awaitable, Callable

from _workload import build_registry, seed_style_app, serve_app
from bigbrotr.core.base_service import BaseService, BaseServiceConfig
from bigbrotr.core.logger import configure_logging
from bigbrotr.core.metrics import MetricsConfig
from bigbrotr.core.server import MetricsServer

SECONDS = 10
INTERVAL = 0.1
CONNECTIONS = 1000


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


async def flood(url: str) -> str:
    process = await asyncio.create_subprocess_exec(
        "wrk", "-t2", f"-c{CONNECTIONS}", f"-d{SECONDS}s", url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await process.communicate()
    found = re.search(r"Requests/sec:\s+([\d.]+)", out.decode())
    return found.group(1) if found else "?"


async def cycles_kept(
    start: Callable[[], Awaitable[tuple[str, Callable[[], Awaitable[object]]]]],
) -> tuple[float, str]:
    url, stop = await start()
    service = Ticker(BaseServiceConfig(interval=INTERVAL, loop_block_threshold=0))
    runner = asyncio.create_task(service.run_forever())
    rate = await flood(url)
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


if __name__ == "__main__":
    asyncio.run(main())
