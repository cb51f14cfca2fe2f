"""Cost of BaseService.inc_counter/set_gauge against a bare prometheus_client child.

Prints ns per call for: the bare child call (the floor), our helper (target
<= 1.5x the floor), the seed-style ``labels(...)`` lookup on every call, and
the helper with metrics off.
"""

from __future__ import annotations

import timeit
from collections.abc import Callable

from bigbrotr.core.base_service import BaseService, BaseServiceConfig
from bigbrotr.core.metrics import SERVICE_COUNTER, SERVICE_GAUGE

CALLS = 1_000_000
REPEATS = 7


class Bench(BaseService[BaseServiceConfig]):
    """A service that is only used for its metric helpers."""

    SERVICE_NAME = "bench"

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
    rows = [
        ("counter", counter_child.inc, lambda: on.inc_counter("items"),
         lambda: SERVICE_COUNTER.labels(service="bench", name="items").inc(),
         lambda: off.inc_counter("items")),
        ("gauge", lambda: gauge_child.set(1.0), lambda: on.set_gauge("depth", 1.0),
         lambda: SERVICE_GAUGE.labels(service="bench", name="depth").set(1.0),
         lambda: off.set_gauge("depth", 1.0)),
    ]  # fmt: skip
    print(f"{'metric':8} {'bare child':>11} {'helper':>9} {'labels()':>9} {'off':>7}  ratios")
    for name, bare, helper, seed, disabled in rows:
        floor, ours, labels, nothing = (per_call_ns(f) for f in (bare, helper, seed, disabled))
        print(
            f"{name:8} {floor:9.0f}ns {ours:7.0f}ns {labels:7.0f}ns {nothing:5.0f}ns  "
            f"helper/bare {ours / floor:.2f}x (target <= 1.50x), "
            f"labels()/bare {labels / floor:.2f}x, helper speed-up over labels() "
            f"{labels / ours:.1f}x"
        )


if __name__ == "__main__":
    main()
