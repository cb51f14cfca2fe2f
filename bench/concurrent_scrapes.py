"""Eight concurrent scrapes of 100k series against one, each client a curl process.

Several Prometheus servers (an HA pair, a federation, a person with curl)
often scrape one target at the same moment. bigbrotr shares renders between
concurrent scrapes, so eight cost at most two renders; the usual handler
renders once per scrape. Both handlers run in this process's event loop; the
clients are curl processes asking for OpenMetrics with gzip, as Prometheus
does. Target: eight concurrent scrapes take at most 2.5x one.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
from collections.abc import Awaitable, Callable

from _workload import build_registry, serve_app
from bigbrotr.core.metrics import MetricsConfig
from bigbrotr.core.server import MetricsServer
from loop_lag import threaded_app

SERIES = 100_000
CLIENTS = 8
REPEATS = {"bigbrotr MetricsServer": 5, "generate_latest in a thread": 2}
TARGET = 2.5
ACCEPT = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"


async def scrape_all(url: str, clients: int) -> float:
    """Seconds until ``clients`` curl processes started together have all scraped ``url``.

    A shell starts them (and reports failures), so this process, which serves
    the scrapes, spends nothing on starting its clients.
    """
    curl = f"curl -sf -o /dev/null --compressed -H 'Accept: {ACCEPT}' '{url}'"
    script = f"pids=''; for i in $(seq {clients}); do {curl} & pids=\"$pids $!\"; done; "
    script += "for pid in $pids; do wait $pid || exit 1; done"
    start = time.perf_counter()
    shell = await asyncio.create_subprocess_exec("sh", "-c", script)
    if await shell.wait():
        raise RuntimeError(f"a curl client failed against {url}")
    return time.perf_counter() - start


async def best(url: str, clients: int, touch: Callable[[float], None], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        touch(0.1)  # a busy service changed a tenth of its values since the last scrape
        times.append(await scrape_all(url, clients))
    return min(times)


async def main() -> None:
    if shutil.which("curl") is None:
        sys.exit("curl is missing: run `make bench`, which installs it")
    registry, touch = build_registry(SERIES)
    config = MetricsConfig(enabled=True, port=0, render_timeout=60, idle_timeout=120)
    ours = MetricsServer(config, registry)
    await ours.start()
    assert ours.url is not None
    runner, threaded_url = await serve_app(threaded_app(registry))
    variants: list[tuple[str, str, Callable[[], Awaitable[None]]]] = [
        ("bigbrotr MetricsServer", ours.url, ours.stop),
        ("generate_latest in a thread", threaded_url, runner.cleanup),
    ]
    print(f"{SERIES} series; wall time until every curl client has its body (best of several)")
    print(f"{'handler':<28} {'1 scrape':>9} {f'{CLIENTS} at once':>10}  ratio")
    for name, url, stop in variants:
        await scrape_all(url, 1)  # warm: the first render builds bigbrotr's cache
        one = await best(url, 1, touch, REPEATS[name])
        many = await best(url, CLIENTS, touch, REPEATS[name])
        verdict = f" (target <= {TARGET}x: {'met' if many / one <= TARGET else 'NOT met'})"
        print(
            f"{name:<28} {one * 1e3:>7.0f}ms {many * 1e3:>8.0f}ms  {many / one:.2f}x"
            + (verdict if stop is ours.stop else "")
        )
        await stop()


if __name__ == "__main__":
    asyncio.run(main())
