"""Shared by the benchmarks: a registry of n series, and the seed-style handler to beat."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

HISTOGRAM_SERIES = 14  # 11 buckets (10 + Inf), _count, _sum, and _created for the oracle


def add_series(registry: CollectorRegistry, series: int, kinds: str = "mixed") -> list[Any]:
    """Add about ``series`` series to ``registry`` and return their children.

    ``kinds`` is ``counter``, ``gauge``, ``histogram`` or ``mixed`` (~45%
    counters, ~45% gauges, ~10% histogram series), with label values shaped
    like a web service's.
    """
    share = {"counter": (100, 0, 0), "gauge": (0, 100, 0), "histogram": (0, 0, 100)}
    counters, gauges, histograms = share.get(kinds, (45, 45, 10))
    counter = Counter("http_requests", "Requests handled.", ["path", "code"], registry=registry)
    gauge = Gauge("queue_depth", "Items waiting.", ["queue", "shard"], registry=registry)
    histogram = Histogram(
        "job_duration_seconds",
        "Job durations.",
        ["job"],
        registry=registry,
        buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    )
    children: list[Any] = [
        counter.labels(f"/api/v1/items/{i}", str(200 + i % 5))
        for i in range(series * counters // 100)
    ]
    children += [gauge.labels(f"queue-{i}", str(i % 16)) for i in range(series * gauges // 100)]
    jobs = series * histograms // 100 // HISTOGRAM_SERIES
    children += [histogram.labels(f"job-{i}") for i in range(max(jobs, 1 if histograms else 0))]
    return children


def build_registry(series: int) -> tuple[CollectorRegistry, Callable[[float], None]]:
    """A registry of ~45% counters, ~45% gauges and ~10% histogram series.

    Returns:
        The registry, and ``touch(fraction)`` which changes that fraction of
        the children's values (the first ones, cycling), as a busy service would.
    """
    rng = random.Random(42)
    registry = CollectorRegistry()
    methods = {"counter": "inc", "gauge": "set", "histogram": "observe"}
    children = [(methods[child._type], child) for child in add_series(registry, series)]
    rng.shuffle(children)
    position = 0

    def touch(fraction: float) -> None:
        nonlocal position
        for _ in range(int(len(children) * fraction)):
            method, child = children[position]
            getattr(child, method)(rng.random() * (1e6 if method == "set" else 20))
            position = (position + 1) % len(children)

    touch(1.0)
    return registry, touch


def rss() -> int:
    """Resident memory of this process in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def seed_style_app(registry: CollectorRegistry, path: str = "/metrics") -> web.Application:
    """The usual aiohttp exporter: ``generate_latest`` on the event loop, per scrape."""

    async def handle(request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4}
        )

    app = web.Application()
    app.router.add_get(path, handle)
    return app


async def serve_app(app: web.Application) -> tuple[web.AppRunner, str]:
    """Serve ``app`` on a free loopback port; returns the runner and the metrics URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}/metrics"
