"""Custom collectors that misbehave on purpose: one blocks until released, one raises."""

from __future__ import annotations

import threading

from prometheus_client.core import GaugeMetricFamily, Metric


class GatedCollector:
    """A custom collector that blocks off the main thread until released, counting those calls.

    The ``gated_registry`` fixture holds one and releases it at teardown.
    """

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.calls = 0
        self.threads: list[threading.Thread] = []

    def collect(self) -> list[Metric]:
        self.threads.append(threading.current_thread())
        if threading.current_thread() is not threading.main_thread():  # tests read on main
            self.calls += 1
            self.gate.wait(10)
        return [GaugeMetricFamily("gated_value", "Released by the test", value=1)]


class BrokenCollector:
    """A custom collector that always raises."""

    def collect(self) -> list[Metric]:
        raise RuntimeError("upstream\nunavailable")
