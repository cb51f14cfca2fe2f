"""Cost of a service's metric calls against a bare prometheus_client child.

Prints ns per call for the seed's helpers (``inc_counter``/``set_gauge``) and for
declared metrics (``self.queue.set``, ``self.pages.labels("200").inc()``,
``self.pages["200"].inc()``) and for
``with self.timed("op")`` (against prometheus_client's ``with child.time()``): the
bare child call (the floor), ours (target <= 1.5x the floor), prometheus_client's
own ``labels(...)`` lookup on every call, and ours with metrics off.
"""

from __future__ import annotations

import timeit
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from bigbrotr.core import service_metrics as m
from bigbrotr.core.base_service import BaseService, BaseServiceConfig
from bigbrotr.core.metrics import SERVICE_COUNTER, SERVICE_GAUGE

CALLS = 1_000_000
REPEATS = 7


class Bench(BaseService[BaseServiceConfig]):
    """A service that is only used for its metric helpers."""

    SERVICE_NAME = "bench"
    queue = m.Gauge("bench_queue_length", "Items waiting.")
    pages = m.Counter("bench_pages_fetched", "Pages fetched.", labels=["status"])

    async def run(self) -> None:
        """Unused."""

    async def cleanup(self) -> int:
        """Unused."""
        return 0


def per_call_ns(fn: Callable[[], object]) -> float:
    """Best-of-REPEATS time per call, in nanoseconds."""
    return min(timeit.repeat(fn, number=CALLS, repeat=REPEATS)) / CALLS * 1e9


def main() -> None:
    on = Bench(BaseServiceConfig(metrics={"enabled": True}))  # type: ignore[arg-type]
    off = Bench(BaseServiceConfig())
    counter_child = SERVICE_COUNTER.labels("bench", "items")
    gauge_child = SERVICE_GAUGE.labels("bench", "depth")
    # The same shapes declared with prometheus_client alone, as a user would without us.
    bare = CollectorRegistry()
    queue_child = Gauge("queue_length", "Items waiting.", ["service"], registry=bare).labels("b")
    pages = Counter("pages_fetched", "Pages fetched.", ["service", "status"], registry=bare)
    pages_child = pages.labels("bench", "200")
    operation = Histogram("op_seconds", "An operation.", ["service", "operation"], registry=bare)
    operation_child = operation.labels("bench", "op")

    def bare_timed() -> None:
        with operation_child.time():
            pass

    def our_timed() -> None:
        with on.timed("op"):
            pass

    def off_timed() -> None:
        with off.timed("op"):
            pass

    rows = [
        ("counter", counter_child.inc, lambda: on.inc_counter("items"),
         lambda: SERVICE_COUNTER.labels(service="bench", name="items").inc(),
         lambda: off.inc_counter("items")),
        ("gauge", lambda: gauge_child.set(1.0), lambda: on.set_gauge("depth", 1.0),
         lambda: SERVICE_GAUGE.labels(service="bench", name="depth").set(1.0),
         lambda: off.set_gauge("depth", 1.0)),
        ("declared gauge", lambda: queue_child.set(1.0), lambda: on.queue.set(1.0),
         lambda: queue_child.set(1.0), lambda: off.queue.set(1.0)),
        ("declared labelled, labels()", pages_child.inc, lambda: on.pages.labels("200").inc(),
         lambda: pages.labels("bench", "200").inc(), lambda: off.pages.labels("200").inc()),
        ("declared labelled, [value]", pages_child.inc, lambda: on.pages["200"].inc(),
         lambda: pages.labels("bench", "200").inc(), lambda: off.pages["200"].inc()),
        ("timed block", bare_timed, our_timed, bare_timed, off_timed),
    ]  # fmt: skip
    print(f"{'metric':28} {'bare child':>11} {'ours':>9} {'labels()':>9} {'off':>7}  ratios")
    for name, bare_call, ours_call, labels_call, off_call in rows:
        timed = (per_call_ns(f) for f in (bare_call, ours_call, labels_call, off_call))
        floor, ours, labels, nothing = timed
        print(
            f"{name:28} {floor:9.0f}ns {ours:7.0f}ns {labels:7.0f}ns {nothing:5.0f}ns  "
            f"ours/bare {ours / floor:.2f}x (target <= 1.50x), "
            f"labels()/bare {labels / floor:.2f}x, ours vs labels() {labels / ours:.1f}x"
        )


if __name__ == "__main__":
    main()
