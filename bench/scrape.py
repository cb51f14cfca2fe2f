"""Scrapes per second on a small registry (~50 series), measured with wrk.

The servers run in this process's event loop; wrk (Debian package ``wrk``)
loads them from another process over loopback, first with one connection
(one scraper, latency-bound), then with ten (a scrape storm, where
bigbrotr coalesces concurrent scrapes into shared renders).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import sys

from _workload import build_registry, seed_style_app, serve_app
from bigbrotr.core.metrics import MetricsConfig
from bigbrotr.core.server import MetricsServer

SERIES = 50
SECONDS = 5


async def wrk(url: str, connections: int) -> float:
    """Requests per second that wrk measured against ``url``."""
    process = await asyncio.create_subprocess_exec(
        "wrk", "-t1", f"-c{connections}", f"-d{SECONDS}s", url,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await process.communicate()
    text = out.decode()
    if "Non-2xx" in text:
        raise RuntimeError(f"wrk saw errors:\n{text}")
    found = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if not found:
        raise RuntimeError(f"cannot read wrk's output:\n{text}")
    return float(found.group(1))


async def main() -> None:
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: run `make bench`, which installs it")
    registry, _ = build_registry(SERIES)
    ours = MetricsServer(MetricsConfig(enabled=True, port=0), registry)
    await ours.start()
    seed_runner, seed_url = await serve_app(seed_style_app(registry))
    assert ours.url is not None
    print(f"{SERIES} series, {SECONDS} s per run; scrapes/s measured by wrk")
    print(f"{'connections':>11} {'bigbrotr':>10} {'seed-style':>11}  ratio")
    for connections in (1, 10):
        mine = await wrk(ours.url, connections)
        seed = await wrk(seed_url, connections)
        print(f"{connections:>11} {mine:>10.0f} {seed:>11.0f}  {mine / seed:.2f}x")
    await ours.stop()
    await seed_runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
