"""Event-loop lag of a service while Prometheus-style scrapes hit a 100k-series registry.

The service process runs an event loop that (a) measures how late a 5 ms
sleep wakes up, and (b) updates 1% of the series every 10 ms, as a busy service
would. A client in another process scrapes with Prometheus' own headers: first
once, right after the server starts (bigbrotr's cache is empty then), with the
lag measured from the client's start to its exit; then continuously for a few
seconds. Three handlers are compared in the same run: bigbrotr's
``MetricsServer``, the seed-style handler calling ``generate_latest`` on the
loop, and ``generate_latest`` moved to a worker thread.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from _workload import build_registry, seed_style_app, serve_app
from bigbrotr.core.metrics import MetricsConfig
from bigbrotr.core.server import MetricsServer

SERIES = 100_000
SECONDS = 8.0
PROBE_INTERVAL = 0.005
CLIENT = """
import sys, time, urllib.request
url, seconds, most = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
headers = {
    "Accept": "application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
    "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "Accept-Encoding": "gzip",
}
end, count = time.monotonic() + seconds, 0
while time.monotonic() < end and (most == 0 or count < most):
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60) as r:
        r.read()
    count += 1
print(count)
"""


def threaded_app(registry: CollectorRegistry) -> web.Application:
    """``generate_latest`` in a worker thread: off the loop, but with its allocations."""

    async def handle(request: web.Request) -> web.Response:
        body = await asyncio.to_thread(generate_latest, registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})

    app = web.Application()
    app.router.add_get("/metrics", handle)
    return app


async def measure(
    start: Callable[[], Awaitable[tuple[str, Callable[[], Awaitable[Any]]]]],
    touch: Callable[[float], None],
    scrapes: int = 0,
) -> tuple[list[float], int]:
    """Lag samples (seconds) and scrapes completed while a client scrapes ``start()``'s URL.

    With ``scrapes``, the client stops after that many and so does the
    measurement; otherwise both run for ``SECONDS``.
    """
    url, stop = await start()
    client = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CLIENT, url, str(SECONDS), str(scrapes), stdout=subprocess.PIPE
    )
    loop = asyncio.get_running_loop()
    lags: list[float] = []

    async def update() -> None:
        while True:
            touch(0.01)
            await asyncio.sleep(0.01)

    updater = asyncio.create_task(update())
    end = loop.time() + SECONDS
    while loop.time() < end and (not scrapes or client.returncode is None):
        before = loop.time()
        await asyncio.sleep(PROBE_INTERVAL)
        lags.append(loop.time() - before - PROBE_INTERVAL)
    updater.cancel()
    out, _ = await client.communicate()
    await stop()
    return lags, int(out or 0)


def p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 1000) - 1] * 1e3


async def main() -> None:
    registry, touch = build_registry(SERIES)

    async def ours() -> tuple[str, Callable[[], Awaitable[Any]]]:
        server = MetricsServer(MetricsConfig(enabled=True, port=0), registry)
        await server.start()
        assert server.url is not None
        return server.url, server.stop

    def app_starter(
        make: Callable[[CollectorRegistry], web.Application],
    ) -> Callable[[], Awaitable[tuple[str, Callable[[], Awaitable[Any]]]]]:
        async def start() -> tuple[str, Callable[[], Awaitable[Any]]]:
            runner, url = await serve_app(make(registry))
            return url, runner.cleanup

        return start

    variants = [
        ("bigbrotr MetricsServer", ours),
        ("seed-style (generate_latest on the loop)", app_starter(seed_style_app)),
        ("generate_latest in a thread", app_starter(threaded_app)),
    ]
    # The first scrape comes first, while bigbrotr's cache (and self-check) are cold.
    for title, scrapes in [("first scrape after start", 1), (f"{SECONDS:.0f} s of scrapes", 0)]:
        print(f"\n{SERIES} series, {title}, client in another process")
        print(f"{'handler':<42} {'scrapes':>7} {'p50':>8} {'p99':>8} {'max':>8}")
        results = {}
        for name, start in variants:
            lags, done = await measure(start, touch, scrapes)
            results[name] = p(lags, 0.99)
            print(
                f"{name:<42} {done:>7} {p(lags, 0.5):>6.1f}ms {results[name]:>6.1f}ms "
                f"{max(lags) * 1e3:>6.1f}ms"
            )
        ours_p99 = results["bigbrotr MetricsServer"]
        for name, value in list(results.items())[1:]:
            print(f"p99 lag: {name} / bigbrotr = {value / ours_p99:.1f}x")
        print(f"target: bigbrotr p99 < 20 ms -> {'met' if ours_p99 < 20 else 'NOT met'}")


if __name__ == "__main__":
    asyncio.run(main())
