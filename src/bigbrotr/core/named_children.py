"""The one cardinality guard: labelled children made on first use, at most ``limit`` of them.

Every place a label value comes from a service (the seed's helpers' ``name``,
timed operations, declared metrics' own labels) goes through ``Bounded``: a
hit is one C-level dict lookup, and past ``metrics.max_names`` values, updates
are folded into one ``__overflow__`` child (the runtime's own names excepted),
so a value built from data cannot grow memory without bound. With metrics off
every child is ``NOOP``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable
from typing import Any, Protocol, TypeVar, cast

__all__ = [
    "AUTOMATIC_NAMES",
    "MAX_LABEL_VALUE_LENGTH",
    "NOOP",
    "OVERFLOW",
    "Bounded",
    "CounterChild",
    "GaugeChild",
    "Labelled",
]

#: The label value that names (or label sets) past ``metrics.max_names`` fold into.
OVERFLOW = "__overflow__"
#: The longest label value a service may make (characters); longer ones fold into
#: ``__overflow__`` too, so a scrape stays small whatever a bug puts in a name.
MAX_LABEL_VALUE_LENGTH = 2048

#: The runtime's own names: dashboards and alerts need them, so they are never folded
#: (``errors_<ExceptionType>`` names are, like any name a service makes up).
AUTOMATIC_NAMES = frozenset(
    (
        "cycles_success",
        "cycles_failed",
        "cycles_over_interval",
        "cycles_skipped",
        "consecutive_failures",
        "last_cycle_timestamp",
        "cycle_in_progress_start_timestamp",
        "interval_seconds",
        "max_consecutive_failures",
        "start_timestamp",
        "next_cycle_timestamp",
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


class _NoOp:
    """What a metric is when metrics are off: accepts every call, records nothing."""

    def _nothing(self, *args: Any, **kwargs: Any) -> _NoOp:
        return self

    # prometheus_client's methods, and no others: a typo fails with metrics off too.
    inc = dec = set = observe = info = state = labels = remove = clear = _nothing
    time = track_inprogress = count_exceptions = set_to_current_time = set_function = _nothing

    def __call__(self, function: Callable[..., Any]) -> Callable[..., Any]:
        return function  # as a decorator (``@metric.time()``)

    def __getitem__(self, key: object) -> _NoOp:
        return self

    def __enter__(self) -> _NoOp:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


#: What every metric is when metrics are off (the helpers' children included).
NOOP = _NoOp()

K = TypeVar("K", bound=Hashable)
ChildT = TypeVar("ChildT")


def _too_long(key: object) -> bool:
    parts = key if isinstance(key, tuple) else (key,)
    return any(len(part) > MAX_LABEL_VALUE_LENGTH for part in parts if isinstance(part, str))


class Bounded(dict[K, ChildT]):
    """Children by key, made on first use, at most ``limit`` of them (0: no limit).

    Past ``limit`` keys, or for a key (a part of one) longer than
    ``MAX_LABEL_VALUE_LENGTH``, a new key gets the ``overflow`` child (not
    stored, so memory and scrape size stay bounded) and ``on_overflow`` is
    called for every such update; keys in ``exempt`` are always stored.
    Without ``make`` (metrics off), every key maps to ``NOOP`` and nothing is
    stored.
    """

    def __init__(
        self,
        make: Callable[[K], ChildT] | None,
        overflow: K,
        limit: int = 0,
        on_overflow: Callable[[str], None] | None = None,
        exempt: frozenset[K] = frozenset(),
    ) -> None:
        super().__init__()
        self._make = make
        self._overflow_key = overflow
        self._limit = limit
        self._on_overflow = on_overflow
        self._exempt = exempt

    def __missing__(self, key: K) -> ChildT:
        if self._make is None:
            return cast(ChildT, NOOP)
        if key not in self._exempt and (
            (self._limit and len(self) >= self._limit) or _too_long(key)
        ):
            if self._on_overflow is not None:
                self._on_overflow(",".join(key) if isinstance(key, tuple) else str(key))
            return self._overflow
        child = self[key] = self._make(key)
        return child

    @functools.cached_property
    def _overflow(self) -> ChildT:
        assert self._make is not None
        return self._make(self._overflow_key)

    def reset(self) -> None:
        """Forget every child, the overflow one included (their series were removed)."""
        self.clear()
        self.__dict__.pop("_overflow", None)

    def keys_made(self) -> list[K]:
        """Every key a child was made for, the overflow one included if it was."""
        return [*self, *([self._overflow_key] if "_overflow" in self.__dict__ else [])]


class Labelled(Bounded[Any, Any]):
    """A declared metric with labels of its own: ``metric[value]`` or ``labels(...)``.

    ``self.pages["200"]`` (``self.pages["a", "b"]`` for two labels) is the hot
    path: a dict lookup in C. ``labels(...)`` takes the values by position or by
    name, as prometheus_client's does. ``service`` is filled in. Children are
    keyed by the strings prometheus_client makes of the values, so ``1``, ``True``
    and ``"1"`` (equal as dict keys) each get their own. Past ``limit`` label
    sets (``metrics.max_names``), new ones go to a child whose labels are all
    ``__overflow__``, and ``on_overflow`` is called.
    """

    def __init__(
        self,
        family: Any,
        service: str,
        names: tuple[str, ...],
        limit: int = 0,
        on_overflow: Callable[[str], None] | None = None,
    ) -> None:
        overflow: object = (OVERFLOW,) * len(names) if len(names) > 1 else OVERFLOW
        super().__init__(self._child, overflow, limit, on_overflow)
        self._family = family
        self._service = service
        self._names = names

    def _child(self, stored: object) -> Any:
        values = stored if isinstance(stored, tuple) else (stored,)
        return self._family.labels(self._service, *values)

    def __missing__(self, key: object) -> Any:
        values = key if isinstance(key, tuple) else (key,)
        if len(values) != len(self._names):
            raise ValueError(f"expected the labels {list(self._names)}, got {list(values)}")
        strings = tuple(map(str, values))
        stored: object = strings if len(strings) > 1 else strings[0]
        child = self.get(stored)
        return super().__missing__(stored) if child is None else child

    def labels(self, *values: object, **by_name: object) -> Any:
        """The child for these label values (positional, or all by name)."""
        if by_name:
            if values or set(by_name) != set(self._names):
                raise ValueError(f"give the labels {list(self._names)} by position or by name")
            values = tuple(by_name[name] for name in self._names)
        return self[values if len(values) != 1 else values[0]]

    def label_sets(self) -> list[tuple[str, ...]]:
        """The full label values (``service`` first) of every child made, overflow included."""
        return [(self._service, *(k if isinstance(k, tuple) else (k,))) for k in self.keys_made()]

    def remove(self, *values: object) -> None:
        """Drop the series with these label values."""
        strings = tuple(map(str, values))
        stored = strings if len(strings) > 1 else strings[0]
        self.pop(stored, None)
        if stored == self._overflow_key:
            self.__dict__.pop("_overflow", None)  # made anew if folding goes on
        self._family.remove(self._service, *strings)
