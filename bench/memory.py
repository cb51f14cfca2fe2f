"""Memory of the render cache against prometheus_client's own memory for the same series.

For each kind of series, builds a registry of 100k series with values set, as a
service would, and measures with tracemalloc what prometheus_client holds for
them; then scrapes it in both formats (text and OpenMetrics) with bigbrotr's
renderer and measures what stays allocated afterwards: the cache. Rendering
with ``generate_latest`` keeps nothing, so the ratio is what bigbrotr adds.
Target: at most 25%.
"""

from __future__ import annotations

import gc
import random
import sys
import tracemalloc

from prometheus_client import CollectorRegistry

from _workload import add_series
from bigbrotr.core.exposition import render

SERIES = 100_000
TARGET = 0.25


def traced() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def measure(kinds: str, series: int) -> tuple[int, int, int]:
    """(series, prometheus_client's bytes, the cache's bytes after both formats)."""
    rng = random.Random(7)
    render(CollectorRegistry())  # the one-off self-check is not part of the cache
    tracemalloc.start()
    base = traced()
    registry = CollectorRegistry()
    children = add_series(registry, series, kinds)
    for child in children:
        if child._type == "gauge":
            child.set(rng.random() * 1e6)
        elif child._type == "counter":
            child.inc(rng.random() * 20)
        else:
            child.observe(rng.random() * 20)
    count = sum(
        not sample.name.endswith("_created")
        for family in registry.collect()
        for sample in family.samples
    )
    del children
    client = traced() - base
    render(registry)
    render(registry, openmetrics=True)
    cache = traced() - base - client
    tracemalloc.stop()
    return count, client, cache


def main() -> None:
    series = int(sys.argv[1]) if len(sys.argv) > 1 else SERIES
    print(f"~{series} series per registry; bytes per series, after text and OpenMetrics scrapes")
    print(f"{'kind':<10} {'series':>8} {'prometheus_client':>18} {'cache':>7}  ratio")
    for kinds in ("gauge", "counter", "histogram", "mixed"):
        count, client, cache = measure(kinds, series)
        ratio = cache / client
        verdict = "met" if ratio <= TARGET else "NOT met"
        print(
            f"{kinds:<10} {count:>8} {client / count:>16.0f} B {cache / count:>5.0f} B  "
            f"{ratio:5.1%} of prometheus_client's (target <= {TARGET:.0%}: {verdict})"
        )


if __name__ == "__main__":
    main()
