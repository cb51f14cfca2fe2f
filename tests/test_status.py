import base64
import dataclasses
import hashlib
import io
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bigbrotr.core.base_service import BaseService, BaseServiceConfig
from bigbrotr.core.health import HealthSnapshot, liveness, readiness
from bigbrotr.core.metrics import MetricsConfig
from bigbrotr.core.server import MetricsServer
from bigbrotr.core.status import (
    CONTENT_SECURITY_POLICY,
    HISTORY,
    CycleRecord,
    LastError,
    StatusSnapshot,
    as_json,
    page,
    state,
)
from bigbrotr.testing import ServiceHarness

Make = Callable[..., ServiceHarness[Any]]

HOSTILE = '</pre><script>alert("x")</script><img src=x onerror=alert(1)>'


@pytest.fixture(scope="module")
def snapshot(healthy: HealthSnapshot) -> StatusSnapshot:
    """A ready service that failed once, with a hostile error message."""
    return StatusSnapshot(
        service="fetcher",
        version="2.1.0",
        bigbrotr_version="0.1.0",
        now=1_700_000_100.0,
        health=healthy,
        cycles_succeeded=41,
        cycles_failed=3,
        interval=30.0,
        last_error=LastError("ValueError", HOSTILE, 1_700_000_040.0),
        recent=(
            CycleRecord(1_700_000_010.0, 1.5, True),
            CycleRecord(1_700_000_040.0, 0.25, False, "ValueError"),
            CycleRecord(1_700_000_070.0, 3.0, True),
        ),
        loop_lag=0.002,
    )


@pytest.mark.parametrize(
    ("change", "expected", "why"),
    [
        ({}, "ready", "every liveness and readiness check passes"),
        ({"consecutive_failures": 1}, "degraded", "still ready: the last cycle failed; not ready"),
        (
            {"consecutive_failures": 3, "max_consecutive_failures": 0},
            "degraded",
            "still ready: the last 3 cycles failed",
        ),
        ({"consecutive_failures": 5}, "not_ready", "/readyz fails: failures: 5 cycles failed"),
        ({"last_success_at": 700.0}, "not_ready", "/readyz fails: freshness: last successful"),
        (
            {"shutting_down": True, "consecutive_failures": 2},
            "stopping",
            "/readyz fails: shutdown: shutting down",
        ),
        (
            {"loop_blocked_for": 3.0, "shutting_down": True},
            "not_alive",
            "/livez fails: event-loop: blocked for 3.0s",
        ),
    ],
)
def test_the_state_and_its_reason_follow_the_verdicts(
    healthy: HealthSnapshot,
    snapshot: StatusSnapshot,
    change: dict[str, object],
    expected: str,
    why: str,
) -> None:
    """A blocked loop outranks shutdown, which outranks a failed check; one failure is degraded."""
    health = dataclasses.replace(healthy, **change)  # type: ignore[arg-type]
    changed = dataclasses.replace(snapshot, health=health)
    assert state(changed) == expected
    html = page(changed, metrics_path="/metrics")
    words = expected.replace("_", " ")
    assert f'<span class="state {expected}" data-field="state">{words}</span>' in html
    (shown,) = re.findall(r'data-field="why">([^<]*)<', html)
    assert shown.startswith(why), shown


@settings(max_examples=300)
@given(
    blocked=st.one_of(st.none(), st.floats(0, 5)),
    streak=st.integers(0, 6),
    limit=st.integers(0, 6),
    since_success=st.one_of(st.none(), st.floats(0, 300)),
    running=st.one_of(st.none(), st.floats(0, 300)),
    stopping=st.booleans(),
)
def test_the_state_never_contradicts_livez_or_readyz(
    healthy: HealthSnapshot,
    snapshot: StatusSnapshot,
    blocked: float | None,
    streak: int,
    limit: int,
    since_success: float | None,
    running: float | None,
    stopping: bool,
) -> None:
    """For any health: ready or degraded iff /readyz passes; not_alive iff /livez fails."""
    health = dataclasses.replace(
        healthy,
        loop_blocked_for=blocked,
        consecutive_failures=streak,
        max_consecutive_failures=limit,
        last_success_at=None if since_success is None else healthy.now - since_success,
        cycle_started_at=None if running is None else healthy.now - running,
        shutting_down=stopping,
    )
    current = state(dataclasses.replace(snapshot, health=health))
    assert (current in ("ready", "degraded")) == readiness(health).ok
    assert (current == "not_alive") == (not liveness(health).ok)
    data = as_json(dataclasses.replace(snapshot, health=health))
    assert (data["state"], data["ready"], data["alive"]) == (
        current,
        readiness(health).ok,
        liveness(health).ok,
    )


def test_json_holds_counts_history_and_the_error_verbatim(
    healthy: HealthSnapshot, snapshot: StatusSnapshot
) -> None:
    """The machine view carries every field, the message unescaped (JSON escapes it itself)."""
    data = json.loads(json.dumps(as_json(snapshot)))
    assert data["state"] == "ready" and data["ready"] is True
    assert (data["cycles_succeeded"], data["cycles_failed"]) == (41, 3)
    assert data["seconds_since_last_success"] == healthy.now - 990.0
    assert data["last_error"] == {"type": "ValueError", "message": HOSTILE, "at": 1_700_000_040.0}
    assert [c["ok"] for c in data["recent_cycles"]] == [True, False, True]
    assert data["recent_cycles"][1]["error"] == "ValueError"
    assert {c["name"] for c in data["checks"]} >= {"failures", "freshness", "shutdown"}


def test_page_escapes_what_the_service_says(snapshot: StatusSnapshot) -> None:
    """An exception message, a service name and a version are text, never markup."""
    hostile = dataclasses.replace(snapshot, service="<b>svc</b>", version='"><i>')
    html = page(hostile, metrics_path="/metrics")
    assert HOSTILE not in html and "<b>svc</b>" not in html and '"><i>' not in html
    assert "&lt;/pre&gt;&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert html.count("<script>") == 1  # the page's own


def test_page_and_json_show_the_schedule_in_words_and_the_next_start(
    snapshot: StatusSnapshot,
) -> None:
    """The schedule as written, its zone, and when the next cycle starts; escaped."""
    nightly = dataclasses.replace(
        snapshot, schedule="30 2 * * * (Europe/Berlin)", next_start=snapshot.now + 250
    )
    html = page(nightly, metrics_path="/metrics")
    assert '<div class="value">30 2 * * * (Europe/Berlin)</div>' in html
    assert "in 4 min 10 s (2023-11-14 22:19:10 UTC)" in html
    assert as_json(nightly)["schedule"] == "30 2 * * * (Europe/Berlin)"
    assert as_json(nightly)["next_cycle_timestamp"] == snapshot.now + 250
    due = dataclasses.replace(nightly, next_start=snapshot.now - 1, schedule="<i>")
    html = page(due, metrics_path="/metrics")
    assert '<div class="value">now</div>' in html and "<i>" not in html
    assert '<div class="value">every 30.0 s</div>' in page(snapshot, metrics_path="/metrics")


def test_page_marks_failed_cycles_in_the_chart(snapshot: StatusSnapshot) -> None:
    """One bar per cycle; the failed one has its own class and says why in its tooltip."""
    html = page(snapshot, metrics_path="/metrics")
    bars = re.findall(r'<rect class="(ok|fail)"[^>]*><title>([^<]*)</title>', html)
    assert [kind for kind, _ in bars] == ["ok", "fail", "ok"]
    assert "failed: ValueError" in bars[1][1]
    x = [float(v) for v in re.findall(r'<rect class="\w+" x="([\d.]+)"', html)]
    assert x == sorted(x) and x[-1] > 500  # oldest to newest, the newest at the right


def test_chart_has_a_duration_scale_on_its_lines(snapshot: StatusSnapshot) -> None:
    """0, half and the longest duration label the chart, at the heights of its lines."""
    html = page(snapshot, metrics_path="/metrics")
    (scale,) = re.findall(r'data-field="scale">(.*?)</div>', html)
    labels = dict(re.findall(r'<span class="(\w+)">([^<]*)</span>', scale))
    assert labels == {"top": "3.0 s", "half": "1.5 s", "zero": "0"}
    lines = [float(y) for y in re.findall(r'<line class="grid"[^>]* y1="([\d.]+)"', html)]
    tops = {float(y) for y in re.findall(r'<rect class="\w+" x="[\d.]+" y="([\d.]+)"', html)}
    assert lines[0] == min(tops)  # the top line is where the longest bar ends
    (style,) = re.findall(r"<style>(.*?)</style>", html, re.S)
    placed = {k: float(v) for k, v in re.findall(r"\.scale \.(\w+)\{top:([\d.]+)px\}", style)}
    assert (placed["top"], placed["half"]) == (lines[0], lines[1])
    assert placed["zero"] == float(re.findall(r'viewBox="0 0 \d+ (\d+)"', html)[0])
    assert "the longest 3.0 s" in html  # for screen readers, which skip the scale
    fast = tuple(CycleRecord(float(i), d, True) for i, d in enumerate((0.0002, 0.00084)))
    html = page(dataclasses.replace(snapshot, recent=fast), metrics_path="/metrics")
    assert re.findall(r'<span class="(?:top|half)">([^<]*)</span>', html) == ["0.84 ms", "0.42 ms"]


def test_chart_keeps_at_most_the_history_length(snapshot: StatusSnapshot) -> None:
    """Given more cycles than it charts, the page draws the newest HISTORY."""
    recent = tuple(CycleRecord(float(i), 1.0, i % 2 == 0) for i in range(HISTORY + 7))
    html = page(dataclasses.replace(snapshot, recent=recent), metrics_path="/metrics")
    assert html.count("<rect ") == HISTORY


def test_page_links_only_to_itself_and_its_server(snapshot: StatusSnapshot) -> None:
    """Self-contained: every href/src is a path on this server or a data: URL."""
    html = page(snapshot, metrics_path="/custom/metrics")
    refs = re.findall(r'(?:href|src)="([^"]*)"', html)
    assert "/custom/metrics" in refs and "/readyz?verbose" in refs
    assert all(ref.startswith("/") or ref.startswith("data:") for ref in refs), refs


def test_content_security_policy_allows_exactly_the_inline_blocks(snapshot: StatusSnapshot) -> None:
    """The CSP's hashes are those of the page's one style and one script, nothing else."""
    html = page(snapshot, metrics_path="/metrics")

    def digest(tag: str) -> str:
        (body,) = re.findall(rf"<{tag}>(.*?)</{tag}>", html, re.S)
        return "sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()

    assert f"style-src '{digest('style')}'" in CONTENT_SECURITY_POLICY
    assert f"script-src '{digest('script')}'" in CONTENT_SECURITY_POLICY
    assert "default-src 'none'" in CONTENT_SECURITY_POLICY


class Quiet(BaseService[BaseServiceConfig]):
    """Succeeds at once."""

    SERVICE_NAME = "quiet_status"

    async def cleanup(self) -> int:
        return 0

    async def run(self) -> None:
        pass


async def test_status_page_and_json_over_http(http: aiohttp.ClientSession, bigbrotr: Make) -> None:
    """``/`` is HTML with its CSP, ``/status.json`` JSON; HEAD has no body; POST is 405."""
    harness = bigbrotr(Quiet)
    service = harness.service
    await harness.run_cycles(1)
    async with harness.serve() as url:
        base = url.removesuffix("/metrics")
        async with http.get(base + "/") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/html")
            assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
            assert f"<h1>{service.SERVICE_NAME}</h1>" in await response.text()
        async with http.get(base + "/status.json") as response:
            data = await response.json()
            assert (data["service"], data["cycles_succeeded"]) == (service.SERVICE_NAME, 1)
        async with http.head(base + "/") as response:  # the headers a GET would get
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/html")
            assert int(response.headers["Content-Length"]) > 1000  # the page's, unsent
        async with http.post(base + "/") as response:
            assert (response.status, response.headers["Allow"]) == (405, "GET, HEAD")


async def test_scrape_endpoint_at_root_wins_over_the_status_page(
    http: aiohttp.ClientSession, bigbrotr: Make
) -> None:
    """With ``path: /``, ``/`` is the metrics; the page's JSON stays at /status.json."""
    harness = bigbrotr(Quiet, {"metrics": {"path": "/"}})
    async with harness.serve() as url:
        async with http.get(url) as response:
            assert "# HELP" in await response.text()
        async with http.get(url + "status.json") as response:
            assert response.status == 200


async def test_without_a_status_source_root_is_not_found(http: aiohttp.ClientSession) -> None:
    """A bare MetricsServer (no service) has no page: ``/`` is 404 as before."""
    server = MetricsServer(MetricsConfig(enabled=True, port=0))
    await server.start()
    assert server.url is not None
    try:
        async with http.get(server.url.removesuffix("/metrics") + "/") as response:
            assert response.status == 404
    finally:
        await server.stop()


class Failing(BaseService[BaseServiceConfig]):
    """Fails with a file name that is not UTF-8, as ``os.fsdecode`` gives it."""

    SERVICE_NAME = "failing_fs"

    async def cleanup(self) -> int:
        return 0

    async def run(self) -> None:
        name = os.fsdecode(b"/data/caf\xe9.csv")
        raise FileNotFoundError(f"no such file: {name}")


async def test_a_message_that_is_not_utf8_still_shows(
    http: aiohttp.ClientSession, tmp_path: Path, bigbrotr: Make
) -> None:
    """A lone surrogate in an error becomes an escape; the page's CSP beats a configured one."""
    web = tmp_path / "web.yml"
    web.write_text("http_server_config:\n  headers:\n    Content-Security-Policy: sandbox\n")
    harness = bigbrotr(Failing, {"metrics": {"web_config_file": str(web)}})
    assert await harness.run_cycles(1) == [False]
    async with harness.serve() as url:
        async with http.get(url.removesuffix("/metrics") + "/") as response:
            assert response.status == 200
            assert "/data/caf\\udce9.csv" in await response.text()
            assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        async with http.get(url) as response:
            assert response.headers["Content-Security-Policy"] == "sandbox"


async def test_a_failing_status_source_is_a_500_with_our_headers(
    http: aiohttp.ClientSession, log_stream: io.StringIO
) -> None:
    """A bug behind the page answers 500 with ``Server: bigbrotr`` and logs its traceback."""

    def broken() -> StatusSnapshot:
        raise RuntimeError("status bug")

    server = MetricsServer(MetricsConfig(enabled=True, port=0), status=broken)
    await server.start()
    assert server.url is not None
    try:
        async with http.get(server.url.removesuffix("/metrics") + "/") as response:
            assert (response.status, response.headers["Server"]) == (500, "bigbrotr")
    finally:
        await server.stop()
    assert "RuntimeError: status bug" in log_stream.getvalue()
