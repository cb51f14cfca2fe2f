import asyncio
import dataclasses
import threading
import time
import urllib.error
import urllib.request

import aiohttp
import pytest

from bigbrotr.core.base_service import BaseService, BaseServiceConfig
from bigbrotr.core.health import HealthSnapshot, liveness, readiness
from bigbrotr.core.metrics import MetricsConfig
from bigbrotr.core.server import MetricsServer
from tests.support.services import Scripted, UniqueName


def test_a_healthy_service_is_alive_and_ready(healthy: HealthSnapshot) -> None:
    """Loop running, cycles succeeding: 200 on both, one passing line per check."""
    assert liveness(healthy).status == readiness(healthy).status == 200
    assert readiness(healthy).text(verbose=True).splitlines() == [
        "[+]event-loop ok",
        "[+]failures ok",
        "[+]freshness ok",
        "[+]cycle ok",
        "[+]shutdown ok",
        "check passed",
    ]
    assert liveness(healthy).text(verbose=False) == "ok\n"


@pytest.mark.parametrize(
    ("change", "alive", "failed"),
    [
        ({"loop_blocked_for": 2.5}, False, "[-]event-loop failed: blocked for 2.5s"),
        ({"loop_blocked_for": None}, True, None),
        ({"consecutive_failures": 5}, True, "[-]failures failed: 5 cycles failed in a row"),
        ({"consecutive_failures": 9, "max_consecutive_failures": 0}, True, None),
        ({"last_success_at": 800.0}, True, "[-]freshness failed: last successful cycle 200s ago"),
        ({"last_success_at": None, "started_at": 950.0}, True, None),
        ({"last_success_at": None, "started_at": 850.0}, True, "[-]freshness failed: start, no"),
        ({"cycle_started_at": 950.0}, True, None),
        ({"cycle_started_at": 870.0}, True, "[-]cycle failed: in progress for 130s"),
        ({"shutting_down": True}, True, "[-]shutdown failed: shutting down"),
    ],
    ids=["blocked", "no watchdog", "streak", "no limit", "stale", "first cycle early",
         "never succeeded", "cycle short", "cycle hung", "stopping"],
)  # fmt: skip
def test_each_check_fails_for_its_reason(
    healthy: HealthSnapshot, change: dict[str, object], alive: bool, failed: str | None
) -> None:
    """Each condition fails its own check with a reason; the rest still pass."""
    snapshot = dataclasses.replace(healthy, **change)  # type: ignore[arg-type]
    assert liveness(snapshot).ok is alive
    verdict = readiness(snapshot)
    assert verdict.ok is (failed is None)
    lines = verdict.text(verbose=True).splitlines()
    if failed is None:
        assert lines[-1] == "check passed"
    else:
        assert next(line for line in lines if line.startswith("[-]")).startswith(failed)
        assert lines[-1] == "check failed" and verdict.status == 503


async def test_health_endpoints_over_http(http: aiohttp.ClientSession, scripted: Scripted) -> None:
    """A service's /healthz, /livez and /readyz answer over HTTP; readiness follows shutdown."""
    service = scripted()(BaseServiceConfig(metrics=MetricsConfig(enabled=True, port=0)), [0])
    server = MetricsServer(service.config.metrics, health=service.health)
    await server.start()
    assert server.url is not None
    base = server.url.removesuffix("/metrics")
    try:
        for path in ("/healthz", "/livez", "/readyz"):
            async with http.get(base + path) as response:
                assert (response.status, await response.text()) == (200, "ok\n")
        async with http.head(base + "/readyz") as response:
            assert response.status == 200 and await response.read() == b""
        service.request_shutdown()
        async with http.get(base + "/readyz?verbose") as response:
            assert response.status == 503
            assert "[-]shutdown failed: shutting down\n" in await response.text()
        async with http.get(base + "/healthz") as response:
            assert response.status == 200
    finally:
        await server.stop()


class Blocker(BaseService[BaseServiceConfig]):
    """Blocks its event loop in its one cycle, until the test has seen /healthz fail."""

    SERVICE_NAME = "blocker"

    def __init__(self, config: BaseServiceConfig) -> None:
        super().__init__(config)
        self.seen = threading.Event()

    async def cleanup(self) -> int:
        return 0

    async def run(self) -> None:
        self.seen.wait(10)  # blocking on the loop: the bug /healthz must reveal
        self.request_shutdown()


def poll_until_503(url: str, seen: list[str], done: threading.Event) -> None:
    """GET ``url`` every 50 ms until a 503 (or 5 s), recording that answer's body; then ``done``."""
    deadline = time.monotonic() + 5
    try:
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(url, timeout=2).close()
            except urllib.error.HTTPError as exc:
                if exc.code == 503:
                    seen.append(exc.read().decode())
                    return
            time.sleep(0.05)
    finally:
        done.set()


async def test_healthz_fails_while_the_loop_is_blocked(unique_name: UniqueName) -> None:
    """The server (on its own loop) answers 503 on /healthz while the service's loop is blocked."""
    cls: type[Blocker] = type("B", (Blocker,), {"SERVICE_NAME": unique_name("blk")})
    service = cls(
        BaseServiceConfig(loop_block_threshold=0.2, metrics=MetricsConfig(enabled=True, port=0))
    )
    server = MetricsServer(service.config.metrics, health=service.health)
    await server.start()
    assert server.url is not None
    seen: list[str] = []
    poller = threading.Thread(
        target=poll_until_503,
        args=(server.url.replace("/metrics", "/healthz?verbose"), seen, service.seen),
    )
    poller.start()
    try:
        await service.run_forever()
    finally:
        await asyncio.to_thread(poller.join, 10)
        await server.stop()
    assert seen and "[-]event-loop failed: blocked for" in seen[0]
