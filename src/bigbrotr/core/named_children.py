"""Labelled children by ``name``, for the seed's helpers (``set_gauge``, ``inc_counter``).

A hit is one C-level dict lookup; past ``metrics.max_names`` names, updates are
folded into one ``__overflow__`` child (the runtime's own names excepted), so a
name built from data cannot grow memory without bound.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Protocol, TypeVar, cast

from bigbrotr.core.service_metrics import NOOP, OVERFLOW

__all__ = ["AUTOMATIC_NAMES", "CounterChild", "GaugeChild", "NamedChildren"]

#: The runtime's own names: dashboards and alerts need them, so they are never folded
#: (``errors_<ExceptionType>`` names are, like any name a service makes up).
AUTOMATIC_NAMES = frozenset(
    (
        "cycles_success",
        "cycles_failed",
        "cycles_over_interval",
        "consecutive_failures",
        "last_cycle_timestamp",
        "cycle_in_progress_start_timestamp",
        "interval_seconds",
        "max_consecutive_failures",
        "start_timestamp",
    )
)


class CounterChild(Protocol):
    """What a counter's child offers the helpers."""

    def inc(self, amount: float = 1) -> None:
        """Add ``amount``."""


class GaugeChild(CounterChild, Protocol):
    """What a gauge's child offers the helpers."""

    def dec(self, amount: float = 1) -> None:
        """Subtract ``amount``."""

    def set(self, value: float) -> None:
        """Set to ``value``."""


ChildT = TypeVar("ChildT")


class NamedChildren(dict[str, ChildT]):
    """Labelled children by ``name``, created on first use, at most ``limit`` of them.

    A hit is one C-level dict lookup, which keeps helper calls close to the
    cost of a bare child call. When disabled, every name maps to a shared
    no-op child and nothing is stored. Past ``limit`` names, a new name gets
    the ``__overflow__`` child (not stored, so memory stays bounded) and
    ``on_overflow`` is called for every such update.
    """

    def __init__(
        self,
        make: Callable[[str], ChildT] | None,
        limit: int = 0,
        on_overflow: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__()
        self._make = make
        self._limit = limit
        self._on_overflow = on_overflow

    def __missing__(self, name: str) -> ChildT:
        if self._make is None:
            return cast(ChildT, NOOP)
        if self._limit and len(self) >= self._limit and name not in AUTOMATIC_NAMES:
            if self._on_overflow is not None:
                self._on_overflow(name)
            return self._overflow
        child = self[name] = self._make(name)
        return child

    @functools.cached_property
    def _overflow(self) -> ChildT:
        assert self._make is not None
        return self._make(OVERFLOW)
