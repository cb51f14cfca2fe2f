"""The status page in a real browser: Debian's headless Chromium loads a running service's ``/``."""

import html
import json
import re
import struct
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.cli import CLI, TARGET, WaitUntil

HOSTILE = '</pre><script>document.title="owned"</script><img src=x onerror=alert(1)>'
WINDOW = (1100, 1000)


def chromium(url: str, profile: Path, *extra: str) -> str:
    """Run headless Chromium on ``url`` with the flags a CI box needs; its stdout."""
    done = subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--no-first-run",
            f"--user-data-dir={profile}",
            *extra,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=True,
    )
    return done.stdout


def status(base: str) -> dict[str, Any]:
    with urllib.request.urlopen(base + "/status.json", timeout=5) as response:
        data: dict[str, Any] = json.load(response)
    return data


def field(dom: str, name: str) -> str:
    """The text of a tile's value on the page, by its ``data-field``."""
    found = re.search(rf'data-field="{name}">.*?<div class="value">(.*?)</div>', dom)
    assert found, f"no {name} tile in the page"
    return html.unescape(found.group(1))


def flaky_service(start_cli: Any, wait_until: WaitUntil) -> tuple[CLI, str]:
    """A service failing every other cycle with markup in its error; its base URL."""
    config = {
        "interval": 0.1,
        "mode": "flaky",
        "fail_message": HOSTILE,
        "max_consecutive_failures": 0,
        "metrics": {"enabled": True, "port": 0},
    }
    cli = start_cli("run", TARGET, "--log-format", "json", config=config)
    base = cli.metrics_url().removesuffix("/metrics")
    wait_until(lambda: status(base)["cycles_failed"] >= 3, what="a few failed cycles")
    return cli, base


def test_chromium_renders_the_status_page_and_it_refreshes(
    wait_until: WaitUntil, start_cli: Any, tmp_path: Path
) -> None:
    """Counts, state, the error (as text, not markup), a scaled chart with failures; refreshes."""
    _, base = flaky_service(start_cli, wait_until)
    before = status(base)
    # Virtual time runs the page's refresh timer (5 s) twice without waiting for it.
    dom = chromium(base + "/", tmp_path / "profile", "--virtual-time-budget=12000", "--dump-dom")

    assert "<title>e2e · bigbrotr</title>" in dom and "version 1.2.3" in dom
    refreshes = re.search(r'<body[^>]*data-refreshes="(\d+)"', dom)
    assert refreshes and int(refreshes.group(1)) >= 1, "the page never refreshed itself"
    assert int(field(dom, "succeeded")) >= before["cycles_succeeded"] >= 1
    assert int(field(dom, "failed")) >= before["cycles_failed"] >= 3
    # Failing every other cycle with no failure limit: still ready, never "failing".
    assert re.search(r'<main data-state="(ready|degraded)">', dom)
    assert re.search(r'data-field="state">(ready|degraded)</span>', dom)
    scale = re.search(r'data-field="scale"><span class="top">([^<]+)</span>.*?"zero">0<', dom)
    assert scale, "no duration scale on the chart"
    assert scale.group(1) not in ("0 ms", "0"), scale.group(1)  # fast cycles still get a scale
    (error,) = re.findall(r'data-field="last-error">.*?<pre>(.*?)</pre>', dom, re.S)
    assert html.unescape(error) == HOSTILE  # shown as text...
    assert dom.count("<script") == 1 and "<img" not in dom  # ...never run as markup
    assert re.search(r'<rect class="ok"', dom) and re.search(r'<rect class="fail"', dom)
    for path in ("/metrics", "/healthz?verbose", "/readyz?verbose"):
        assert f'href="{path}"' in dom


def test_chromium_screenshots_the_status_page(
    wait_until: WaitUntil, start_cli: Any, tmp_path: Path
) -> None:
    """A screenshot of the page as a person sees it lands in the test's tmp dir as a PNG."""
    _, base = flaky_service(start_cli, wait_until)
    shot = tmp_path / "status.png"
    chromium(
        base + "/",
        tmp_path / "profile",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        "--hide-scrollbars",
        f"--screenshot={shot}",
    )
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", png[16:24]) == WINDOW  # the IHDR chunk's width and height
    assert len(png) > 20_000  # a rendered page, not a blank one
