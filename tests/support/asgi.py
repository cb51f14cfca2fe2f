"""The ``serve`` fixture's type, and the registry the ASGI and adapters tests serve."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TypeAlias

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from bigbrotr.core.asgi import MetricsApp

#: ``async with serve(app) as base_url:``, uvicorn on a free loopback port.
Serve: TypeAlias = Callable[[MetricsApp], contextlib.AbstractAsyncContextManager[str]]


def user_registry() -> CollectorRegistry:
    """A counter, a gauge and a histogram; the same content every time one is made."""
    registry = CollectorRegistry()
    Counter("jobs", "Jobs done.", ["queue"], registry=registry).labels("a").inc(2)
    Gauge("temperature_celsius", "Temp.", registry=registry).set(21.5)
    Histogram("wait_seconds", "Wait.", registry=registry).observe(0.2)
    return registry
