"""What basic auth costs a scrape: a cached check against an open endpoint, and bcrypt.

Two servers on one small registry, one open and one with a bcrypt (cost 10)
basic-auth user, are scraped back to back by one client over loopback; after
the first scrape the password check is served from memory. Also timed: the
first check of a password (bcrypt) and the check of an unknown user, which
must cost the same (no timing oracle on user names). And a valid client's first
scrape (a check never made before, cost 12) under a flood of wrong passwords
from 90 keep-alive connections, against the same scrape with no flood: the
same wrong password from the client's own address, then random ones from
another address (127.0.0.2).
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import os
import statistics
import tempfile
import threading
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
ATTACKERS = 90


def basic(user: str, password: bytes) -> str:
    return "Basic " + base64.b64encode(user.encode() + b":" + password).decode()


def attack(port: int, source: str, random: bool, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            connection = http.client.HTTPConnection(
                "127.0.0.1", port, timeout=30, source_address=(source, 0)
            )
            while not stop.is_set():
                wrong = os.urandom(6).hex().encode() if random else b"wrong"
                connection.request("GET", "/metrics", headers={"Authorization": basic("p", wrong)})
                connection.getresponse().read()
        except OSError:
            time.sleep(0.01)


async def under_flood(directory: str) -> None:
    """A valid first scrape (never checked before) with and without a flood of wrong ones."""
    passwords = [f"valid-{n}".encode() for n in range(3)]
    users = "".join(
        f"  p{n}: '{bcrypt.hashpw(p, bcrypt.gensalt(rounds=12)).decode()}'\n"
        for n, p in enumerate(passwords)
    )
    # one user "p" too, so the attackers' wrong passwords cost a real check
    users += f"  p: '{bcrypt.hashpw(b'other', bcrypt.gensalt(rounds=12)).decode()}'\n"
    web = Path(directory) / "flood.yml"
    web.write_text("basic_auth_users:\n" + users)
    registry, _ = build_registry(50)
    server = MetricsServer(MetricsConfig(enabled=True, port=0, web_config_file=str(web)), registry)
    await server.start()
    assert server.port is not None
    port = server.port

    def first(n: int) -> float:
        start = time.perf_counter()
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        connection.request(
            "GET", "/metrics", headers={"Authorization": basic(f"p{n}", passwords[n])}
        )
        response = connection.getresponse()
        response.read()
        assert response.status == 200, f"valid first scrape answered {response.status}"
        return time.perf_counter() - start

    quiet = await asyncio.to_thread(first, 0)
    results = []
    for n, (source, random) in enumerate((("127.0.0.1", False), ("127.0.0.2", True)), 1):
        stop = threading.Event()
        for _ in range(ATTACKERS):
            threading.Thread(target=attack, args=(port, source, random, stop), daemon=True).start()
        await asyncio.sleep(2)
        results.append(await asyncio.to_thread(first, n))
        stop.set()
        await asyncio.sleep(1)
    await server.stop()
    same, other = results
    print(f"valid first scrape (bcrypt cost 12): no flood {quiet * 1e3:.0f} ms; under "
          f"{ATTACKERS} connections of wrong passwords: the same one from its own address "
          f"{same * 1e3:.0f} ms ({same / quiet:.1f}x), random ones from another address "
          f"{other * 1e3:.0f} ms ({other / quiet:.1f}x)")  # fmt: skip


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
    with tempfile.TemporaryDirectory() as directory:
        await under_flood(directory)


if __name__ == "__main__":
    asyncio.run(main())
