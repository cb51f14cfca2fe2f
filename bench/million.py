"""One million series: memory, first render and steady renders.

Builds a mixed registry of ~1M series (45% counters, 45% gauges, 10% histogram
series) and reports the process's resident memory for prometheus_client's
series and for the render cache (after both formats are scraped), the first
render (empty cache, self-check included) and steady renders after every value
changed and after 10% did, beside one ``generate_latest`` of the same registry.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

from prometheus_client import generate_latest

from _workload import build_registry, rss
from bigbrotr.core.exposition import render

SERIES = 1_000_000


def seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    gc.collect()
    before = rss()
    registry, touch = build_registry(SERIES)
    gc.collect()
    client = rss() - before
    first_text = seconds(lambda: render(registry))
    first_om = seconds(lambda: render(registry, openmetrics=True))
    gc.collect()
    cache = rss() - before - client
    print(f"{SERIES} series (mixed)")
    print(
        f"memory (RSS): prometheus_client {client / 2**20:.0f} MiB, "
        f"render cache {cache / 2**20:.0f} MiB ({cache / client:.1%})"
    )
    print(f"first render (empty cache): text {first_text:.2f} s, OpenMetrics {first_om:.2f} s")
    for fraction in (1.0, 0.1):
        touch(fraction)
        text = seconds(lambda: render(registry))
        touch(fraction)
        om = seconds(lambda: render(registry, openmetrics=True))
        print(f"steady render, {fraction:.0%} changed: text {text:.2f} s, OpenMetrics {om:.2f} s")
    touch(1.0)
    ours = seconds(lambda: render(registry))
    touch(1.0)
    theirs = seconds(lambda: generate_latest(registry))
    print(
        f"every value changed, text: ours {ours:.2f} s, generate_latest {theirs:.2f} s "
        f"({theirs / ours:.1f}x)"
    )


if __name__ == "__main__":
    main()
