"""``exposition.Site``: every route's answer from a request and the state it is given."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, Gauge

from bigbrotr.core.exposition import (
    MAX_PENDING_CHECKS,
    MAX_PENDING_CHECKS_PER_CLIENT,
    Access,
    Endpoint,
    Request,
    Site,
)
from bigbrotr.core.health import HealthSnapshot
from bigbrotr.core.status import StatusSnapshot


class Password:
    """An authenticator that accepts one header; notes where each check ran."""

    def __init__(self, good: str) -> None:
        self.good = good
        self.checked_on: list[str] = []
        self.headers: list[str | None] = []

    def known(self, header: str | None) -> bool | None:
        return None

    def check(self, header: str | None) -> bool:
        self.checked_on.append(threading.current_thread().name)
        self.headers.append(header)
        return header == self.good


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    """A metrics endpoint on a registry of one gauge."""
    registry = CollectorRegistry()
    Gauge("temperature", "Temp.", registry=registry).set(21)
    endpoint = Endpoint(registry)
    yield endpoint
    endpoint.close()


def status_of(healthy: HealthSnapshot) -> StatusSnapshot:
    return StatusSnapshot("svc", "1", "0", 1e9, healthy, 1, 0, 10.0, None, (), None)


def site(endpoint: Endpoint, healthy: HealthSnapshot, **access: object) -> Site:
    return Site(endpoint, health=lambda: healthy, status=lambda: status_of(healthy),
                access=lambda: Access(**access))  # type: ignore[arg-type]  # fmt: skip


async def test_basic_auth_guards_every_path_but_the_unprotected(
    endpoint: Endpoint, healthy: HealthSnapshot
) -> None:
    """No or wrong credentials: 401 asking for Basic; unprotected paths pass; bcrypt off-loop."""
    password = Password("Basic good")
    routes = site(endpoint, healthy, auth=password, unprotected_paths=frozenset({"/healthz"}))
    refused = await routes.respond(Request("GET", "/metrics"))
    assert refused.status == 401
    assert refused.headers["WWW-Authenticate"].startswith("Basic realm=")
    assert (await routes.respond(Request("GET", "/healthz"))).status == 200
    allowed = await routes.respond(Request("GET", "/metrics", [("Authorization", "Basic good")]))
    assert allowed.status == 200 and b"temperature 21.0" in allowed.body
    main = threading.current_thread().name
    assert password.checked_on and main not in password.checked_on


async def test_headers_the_page_sets_win_and_configured_ones_win_over_the_metrics(
    endpoint: Endpoint, healthy: HealthSnapshot
) -> None:
    """Configured headers go on every answer; the page's CSP wins, the metrics' do not."""
    configured = {"Content-Security-Policy": "none-of-yours", "X-Mine": "1", "Vary": "x"}
    routes = site(endpoint, healthy, headers=configured)
    page = await routes.respond(Request("GET", "/"))
    metrics = await routes.respond(Request("GET", "/metrics"))
    assert page.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert (page.headers["X-Mine"], page.headers["Server"]) == ("1", "bigbrotr")
    assert (metrics.headers["Vary"], metrics.headers["X-Mine"]) == ("x", "1")


async def test_own_routes_answer_reads_only_and_head_without_a_body(
    endpoint: Endpoint, healthy: HealthSnapshot
) -> None:
    """POST gets 405 with Allow; HEAD gets the GET's headers and no body; JSON is JSON."""
    routes = site(endpoint, healthy)
    posted = await routes.respond(Request("POST", "/readyz"))
    assert (posted.status, posted.headers["Allow"]) == (405, "GET, HEAD")
    get = await routes.respond(Request("GET", "/status.json"))
    head = await routes.respond(Request("HEAD", "/status.json"))
    assert json.loads(get.body)["service"] == "svc"
    assert head.body == b"" and head.headers["Content-Length"] == str(len(get.body))


async def test_a_failing_status_source_is_a_500_without_a_traceback(
    endpoint: Endpoint, healthy: HealthSnapshot
) -> None:
    """A bug behind the page answers 500 "internal error", logged, never a traceback."""

    def broken() -> StatusSnapshot:
        raise RuntimeError("bug")

    routes = Site(endpoint, health=lambda: healthy, status=broken)
    answer = await routes.respond(Request("GET", "/"))
    assert (answer.status, answer.body) == (500, b"internal error\n")


async def test_a_mounted_app_routes_within_its_root_path(healthy: HealthSnapshot) -> None:
    """Under root_path /ops, /ops/readyz is readiness; any other path is the metrics."""
    registry = CollectorRegistry()
    Gauge("temperature", "Temp.", registry=registry).set(21)
    endpoint = Endpoint(registry, path=None)
    routes = Site(endpoint, metrics_path=None, health=lambda: healthy)
    ready = await routes.respond(Request("GET", "/ops/readyz", root_path="/ops"))
    other = await routes.respond(Request("GET", "/ops/x", root_path="/ops"))
    endpoint.close()
    assert (ready.status, ready.body) == (200, b"ok\n")
    assert b"temperature 21.0" in other.body


async def test_metrics_served_at_the_root_come_before_the_status_page(
    healthy: HealthSnapshot,
) -> None:
    """With the metrics path at /, / is the metrics, not the page."""
    registry = CollectorRegistry()
    Gauge("temperature", "Temp.", registry=registry).set(21)
    endpoint = Endpoint(registry, path="/")
    routes = Site(endpoint, metrics_path="/", status=lambda: status_of(healthy))
    root = await routes.respond(Request("GET", "/"))
    endpoint.close()
    assert b"temperature 21.0" in root.body


class Gated(Password):
    """A slow password check: each waits until the test opens the gate."""

    def __init__(self, good: str) -> None:
        super().__init__(good)
        self.gate = threading.Event()

    def check(self, header: str | None) -> bool:
        self.gate.wait(10)
        return super().check(header)


async def test_password_checks_pending_are_bounded_and_past_it_answer_503(
    endpoint: Endpoint, healthy: HealthSnapshot
) -> None:
    """A flood of checks: a few per client and MAX_PENDING_CHECKS in all; past it, 503."""
    password = Gated("Basic good")
    routes = site(endpoint, healthy, auth=password, headers={"X-Mine": "1"})

    def wrong(client: str) -> Request:
        return Request("GET", "/metrics", [("Authorization", f"Basic {client}")], client=client)

    per, clients = (
        MAX_PENDING_CHECKS_PER_CLIENT,
        MAX_PENDING_CHECKS // MAX_PENDING_CHECKS_PER_CLIENT,
    )
    flood = [
        asyncio.create_task(routes.respond(wrong(f"10.0.0.{n}")))
        for n in range(clients)
        for _ in range(per)
    ]
    await asyncio.sleep(0)  # each task takes its place, then waits for its check
    for client in ("10.0.0.0", "10.0.0.99"):  # one more from a flooding client; a new one
        over = await routes.respond(wrong(client))
        assert (over.status, over.headers["Retry-After"], over.headers["X-Mine"]) == (503, "1", "1")
    password.gate.set()
    assert {answer.status for answer in await asyncio.gather(*flood)} == {401}
    valid = Request("GET", "/metrics", [("Authorization", "Basic good")], client="10.0.0.99")
    assert (await routes.respond(valid)).status == 200  # once answered, checks run again


async def test_a_flooding_client_cannot_take_every_place_from_another(
    endpoint: Endpoint, healthy: HealthSnapshot
) -> None:
    """One address sending wrong passwords fills its own places only; another still gets in."""
    password = Gated("Basic good")
    routes = site(endpoint, healthy, auth=password)
    attacker = [
        asyncio.create_task(
            routes.respond(
                Request("GET", "/metrics", [("Authorization", f"Basic {n}")], client="10.6.6.6")
            )
        )
        for n in range(MAX_PENDING_CHECKS)
    ]
    await asyncio.sleep(0)
    valid = asyncio.create_task(
        routes.respond(
            Request("GET", "/metrics", [("Authorization", "Basic good")], client="10.0.0.1")
        )
    )
    await asyncio.sleep(0)
    password.gate.set()
    statuses = [answer.status for answer in await asyncio.gather(*attacker)]
    assert statuses.count(401) == MAX_PENDING_CHECKS_PER_CLIENT
    assert statuses.count(503) == MAX_PENDING_CHECKS - MAX_PENDING_CHECKS_PER_CLIENT
    assert (await valid).status == 200


async def test_a_check_for_a_client_that_left_is_dropped_and_frees_its_place(
    endpoint: Endpoint, healthy: HealthSnapshot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request cancelled (its client disconnected) while its check waits never runs bcrypt."""
    monkeypatch.setattr("os.cpu_count", lambda: 2)  # two checks run, the rest wait
    password = Gated("Basic good")
    routes = site(endpoint, healthy, auth=password)

    def wrong(n: int) -> Request:
        return Request("GET", "/metrics", [("Authorization", f"Basic {n}")], client=f"10.0.0.{n}")

    flood = [asyncio.create_task(routes.respond(wrong(n))) for n in range(MAX_PENDING_CHECKS)]
    await asyncio.sleep(0)
    left = flood.pop()  # waiting behind the two running checks
    left.cancel()
    await asyncio.sleep(0.05)  # its place is handed back on the loop
    newcomer = asyncio.create_task(routes.respond(wrong(99)))
    await asyncio.sleep(0)
    password.gate.set()
    assert {answer.status for answer in await asyncio.gather(*flood, newcomer)} == {401}
    assert left.cancelled()
    checked = password.headers
    assert f"Basic {MAX_PENDING_CHECKS - 1}" not in checked  # before: run for nobody
    assert len(checked) == MAX_PENDING_CHECKS  # the rest, and the newcomer in the freed place
