"""Render time: bigbrotr's renderer against prometheus_client's generators.

For 1k, 10k and 100k series, each render is preceded by changing the values of
a fraction of the series: all of them (the worst case for our line cache) and
10% (a busy service between two 15 s scrapes). Best of several renders each.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from _workload import build_registry
from bigbrotr.core.exposition import render

REPEATS = {1_000: 20, 10_000: 7, 100_000: 3}


def best_ms(
    fn: Callable[[], bytes], touch: Callable[[float], None], fraction: float, n: int
) -> float:
    times = []
    for _ in range(n):
        touch(fraction)
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times) * 1e3


def compare(series: int, repeats: int) -> None:
    registry, touch = build_registry(series)
    render(registry)  # the first render builds the per-child prefixes, once per process
    render(registry, openmetrics=True)
    cases = [
        ("text 0.0.4", lambda: render(registry), lambda: generate_latest(registry)),
        (
            "openmetrics",
            lambda: render(registry, openmetrics=True),
            lambda: generate_openmetrics(registry),  # type: ignore[no-untyped-call]
        ),
    ]
    for name, ours, theirs in cases:
        for fraction in (1.0, 0.1):
            a = best_ms(ours, touch, fraction, repeats)
            b = best_ms(theirs, touch, fraction, repeats)
            print(
                f"{series:>7} {name:<12} {fraction:>6.0%} {a:>7.1f}ms {b:>7.1f}ms  "
                f"{b / a:5.1f}x faster"
            )


def main() -> None:
    print(f"{'series':>7} {'format':<12} {'changed':>7} {'ours':>9} {'theirs':>9}  ratio")
    for series, repeats in REPEATS.items():
        compare(series, repeats)


if __name__ == "__main__":
    main()
