"""What basic auth costs a scrape: a cached check against an open endpoint, and bcrypt.

Two servers on one small registry, one open and one with a bcrypt (cost 10)
basic-auth user, are scraped back to back by one client over loopback; after
the first scrape the password check is served from memory. Also timed: the
first check of a password (bcrypt) and the check of an unknown user, which
must cost the same (no timing oracle on user names).
"""

from __future__ import annotations

import asyncio
import base64
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
import bcrypt

from _workload import build_registry
from bigbrotr.core.metrics import MetricsConfig
from bigbrotr.core.server import MetricsServer
from bigbrotr.core.web_config import BasicAuth

SCRAPES = 500
PASSWORD = b"scrape-password"


async def per_scrape_ms(url: str, headers: dict[str, str]) -> float:
    async with aiohttp.ClientSession() as session:
        for _ in range(20):  # warm up (and fill the auth cache)
            async with session.get(url, headers=headers) as response:
                await response.read()
        start = time.perf_counter()
        for _ in range(SCRAPES):
            async with session.get(url, headers=headers) as response:
                assert response.status == 200
                await response.read()
        return (time.perf_counter() - start) / SCRAPES * 1e3


def check_ms(auth: BasicAuth, header: str, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        auth.check(header)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


async def main() -> None:
    hashed = bcrypt.hashpw(PASSWORD, bcrypt.gensalt(rounds=10))
    registry, _ = build_registry(50)
    with tempfile.TemporaryDirectory() as directory:
        web = Path(directory) / "web.yml"
        web.write_text(f"basic_auth_users:\n  prometheus: '{hashed.decode()}'\n")
        open_server = MetricsServer(MetricsConfig(enabled=True, port=0), registry)
        auth_server = MetricsServer(
            MetricsConfig(enabled=True, port=0, web_config_file=str(web)), registry
        )
        await open_server.start()
        await auth_server.start()
        assert open_server.url is not None and auth_server.url is not None
        header = "Basic " + base64.b64encode(b"prometheus:" + PASSWORD).decode()
        open_ms = await per_scrape_ms(open_server.url, {})
        auth_ms = await per_scrape_ms(auth_server.url, {"Authorization": header})
        await open_server.stop()
        await auth_server.stop()
    auth = BasicAuth({"prometheus": hashed})
    unknown = "Basic " + base64.b64encode(b"nobody:" + PASSWORD).decode()
    print(f"scrape, 50 series, {SCRAPES} in a row: open {open_ms:.2f} ms, "
          f"basic auth (cached) {auth_ms:.2f} ms ({auth_ms / open_ms:.2f}x)")  # fmt: skip
    print(f"first check of a password (bcrypt cost 10): {check_ms(auth, header):.1f} ms; "
          f"unknown user: {check_ms(auth, unknown):.1f} ms (should match)")  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
