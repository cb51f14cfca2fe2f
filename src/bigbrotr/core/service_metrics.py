"""Metrics a service declares on its class, of any prometheus_client kind.

A declaration gives the metric its own name, HELP, unit, labels and buckets;
the ``service`` label is added for it. ``BaseService.__init__`` binds each
declaration to the service: the instance attribute is then prometheus_client's
own child (``self.queue.set(3)``), or, with labels of its own, an object whose
``labels(...)`` returns cached children (``self.pages.labels("200").inc()``).
With metrics off, it is a no-op stand-in and nothing is registered.

Examples:
    from bigbrotr.core import service_metrics as m

    class Fetcher(BaseService[FetcherConfig]):
        SERVICE_NAME = "fetcher"
        pages = m.Counter("pages_fetched", "Pages fetched, by HTTP status.", labels=["status"])
        fetch_time = m.Histogram("fetch_duration", "Time to fetch a page.", unit="seconds")

        async def run(self) -> None:
            with self.fetch_time.time():
                status = await fetch()
            self.pages.labels(status).inc()

Declarations sharing a name share one family (each service its own series),
if they declare it the same way; declaring it differently is an error.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar

import prometheus_client
from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import CollectorRegistry

from bigbrotr.core.per_registry import PerRegistry

__all__ = [
    "NOOP",
    "OVERFLOW",
    "Counter",
    "Declared",
    "Enum",
    "Gauge",
    "Histogram",
    "Info",
    "Summary",
]

#: The label value that names (or label sets) past ``metrics.max_names`` fold into.
OVERFLOW = "__overflow__"
_METRIC_METHODS = frozenset(
    ("inc", "dec", "set", "observe", "labels", "time", "info", "state", "remove")
)
_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_UNIT = re.compile(r"[a-z][a-z0-9_]*")
#: Units Prometheus asks to express in base units instead, with the base unit.
_NOT_BASE_UNITS = {
    **dict.fromkeys(("ms", "milliseconds", "us", "microseconds", "ns", "nanoseconds"), "seconds"),
    **dict.fromkeys(("minutes", "hours", "days"), "seconds"),
    **dict.fromkeys(("kb", "kilobytes", "mb", "megabytes", "gb", "gigabytes"), "bytes"),
    "percent": "ratio (0-1)",
}


class Declared:
    """A metric declared on a service class; see the module docstring.

    Args:
        name: The metric's name (a counter's ``_total`` and the unit suffix
            are added as prometheus_client adds them).
        documentation: Its HELP text.
        labels: Label names of its own; ``service`` is added first.
        unit: Its unit, a base unit (``seconds``, ``bytes``, ``ratio``...).

    Raises:
        ValueError: If a name, label or unit breaks Prometheus' naming rules.
    """

    kind: ClassVar[type[MetricWrapperBase]]
    #: Label names the kind reserves for itself.
    reserved: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self,
        name: str,
        documentation: str,
        *,
        labels: Sequence[str] = (),
        unit: str = "",
        **options: Any,
    ) -> None:
        if not _NAME.fullmatch(name):
            raise ValueError(f"metric name {name!r}: use letters, digits and _ (not first digit)")
        if not documentation.strip():
            raise ValueError(f"metric {name!r}: give it a HELP text (documentation)")
        labels = tuple(labels)
        for label in labels:
            if not _NAME.fullmatch(label) or label.startswith("__"):
                raise ValueError(f"metric {name!r}: label {label!r} is not a valid label name")
            if label == "service" or label in self.reserved:
                raise ValueError(f"metric {name!r}: label {label!r} is reserved")
        if len(set(labels)) != len(labels):
            raise ValueError(f"metric {name!r}: a label is listed twice in {list(labels)}")
        if unit and not _UNIT.fullmatch(unit):
            raise ValueError(f"metric {name!r}: unit {unit!r} is not a valid unit")
        if base := _NOT_BASE_UNITS.get(unit.lower()):
            raise ValueError(f"metric {name!r}: unit {unit!r}: Prometheus uses base units: {base}")
        self.name = name
        self.documentation = documentation
        self.label_names = labels
        self.unit = unit
        self.options = options
        self.attribute = name

    def __set_name__(self, owner: type, attribute: str) -> None:
        self.attribute = attribute

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        # Only reached on the class (or before __init__ bound it): the instance
        # attribute set by BaseService.__init__ takes precedence over this method.
        return self

    def __getattr__(self, name: str) -> Any:
        if name in _METRIC_METHODS:  # Fetcher.items.inc(): the class holds the declaration
            raise AttributeError(
                f"{name}() on the declaration of {self.attribute!r}: use the service "
                f"instance's attribute (self.{self.attribute}.{name}(...))"
            )
        raise AttributeError(name)

    def spec(self) -> tuple[object, ...]:
        """What must match for two declarations to share a family."""
        options = tuple(sorted((k, repr(v)) for k, v in self.options.items()))
        return (self.kind, self.name, self.documentation, self.label_names, self.unit, options)

    def bind(
        self,
        service: str,
        *,
        enabled: bool,
        registry: CollectorRegistry = REGISTRY,
        limit: int = 0,
        on_overflow: Callable[[str], None] | None = None,
    ) -> Any:
        """The object the service uses: a child, a ``Labelled`` front, or a no-op.

        ``limit`` and ``on_overflow`` bound the label sets of a ``Labelled``.
        """
        if not enabled:
            return NOOP
        family = _families(registry, self)
        if self.label_names:
            return Labelled(family, service, self.label_names, limit, on_overflow)
        return family.labels(service)

    def remove(self, service: str, bound: Any, *, registry: CollectorRegistry = REGISTRY) -> None:
        """Remove the series ``bound`` (what ``bind`` gave ``service``) created."""
        family = _declared(registry).get(self.name, (None, None))[1]
        if family is None:
            return
        keys = [(service,)] if not isinstance(bound, Labelled) else bound.label_sets()
        keys += [(service, *[OVERFLOW] * len(self.label_names))] if self.label_names else []
        for key in keys:
            with contextlib.suppress(KeyError):
                family.remove(*key)

    def _make(self, registry: CollectorRegistry) -> MetricWrapperBase:
        return self.kind(
            self.name,
            self.documentation,
            ("service", *self.label_names),
            unit=self.unit,
            registry=registry,
            **self.options,
        )


class Counter(Declared):
    """A counter (``_total`` is added to its name): ``inc``, ``count_exceptions``."""

    kind = prometheus_client.Counter


class Gauge(Declared):
    """A gauge: ``set``, ``inc``, ``dec``, ``set_to_current_time``, ``track_inprogress``."""

    kind = prometheus_client.Gauge


class Histogram(Declared):
    """A histogram: ``observe``, ``time``; ``buckets=`` as prometheus_client takes them."""

    kind = prometheus_client.Histogram
    reserved = frozenset({"le"})

    def __init__(
        self,
        name: str,
        documentation: str,
        *,
        labels: Sequence[str] = (),
        unit: str = "",
        buckets: Iterable[float] = prometheus_client.Histogram.DEFAULT_BUCKETS,
    ) -> None:
        super().__init__(name, documentation, labels=labels, unit=unit, buckets=tuple(buckets))


class Summary(Declared):
    """A summary (count and sum): ``observe``, ``time``."""

    kind = prometheus_client.Summary
    reserved = frozenset({"quantile"})


class Info(Declared):
    """An info metric (``_info`` is added to its name): ``info({...})``."""

    kind = prometheus_client.Info


class Enum(Declared):
    """An enum (one of ``states`` at a time): ``state("...")``."""

    kind = prometheus_client.Enum

    def __init__(
        self, name: str, documentation: str, *, states: Sequence[str], labels: Sequence[str] = ()
    ) -> None:
        super().__init__(name, documentation, labels=labels, states=tuple(states))
        if name in self.label_names:
            raise ValueError(f"enum {name!r}: a label cannot share the enum's name")


class Labelled(dict[object, Any]):
    """A declared metric with labels of its own: ``metric[value]`` or ``labels(...)``.

    ``self.pages["200"]`` (``self.pages["a", "b"]`` for two labels) is the hot
    path: a dict lookup in C. ``labels(...)`` takes the values by position or by
    name, as prometheus_client's does. ``service`` is filled in. Children are
    keyed by the strings prometheus_client makes of the values, so ``1``, ``True``
    and ``"1"`` (equal as dict keys) each get their own. Past ``limit`` label
    sets (``metrics.max_names``), new ones go to a child whose labels are all
    ``__overflow__``, and ``on_overflow`` is called, so a label made from data
    cannot grow memory without bound.
    """

    __slots__ = ("_family", "_limit", "_names", "_on_overflow", "_service")

    def __init__(
        self,
        family: MetricWrapperBase,
        service: str,
        names: tuple[str, ...],
        limit: int = 0,
        on_overflow: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__()
        self._family = family
        self._service = service
        self._names = names
        self._limit = limit
        self._on_overflow = on_overflow

    def __missing__(self, key: object) -> Any:
        values = key if isinstance(key, tuple) else (key,)
        if len(values) != len(self._names):
            raise ValueError(f"expected the labels {list(self._names)}, got {list(values)}")
        strings = tuple(map(str, values))
        stored: object = strings if len(strings) > 1 else strings[0]
        child = self.get(stored)
        if child is None:
            if self._limit and len(self) >= self._limit:
                if self._on_overflow is not None:
                    self._on_overflow(",".join(strings))
                return self._family.labels(self._service, *[OVERFLOW] * len(strings))
            child = self[stored] = self._family.labels(self._service, *strings)
        return child

    def labels(self, *values: object, **by_name: object) -> Any:
        """The child for these label values (positional, or all by name)."""
        if by_name:
            if values or set(by_name) != set(self._names):
                raise ValueError(f"give the labels {list(self._names)} by position or by name")
            values = tuple(by_name[name] for name in self._names)
        return self[values if len(values) != 1 else values[0]]

    def label_sets(self) -> list[tuple[str, ...]]:
        """The full label values (``service`` first) of every child made so far."""
        return [(self._service, *(k if isinstance(k, tuple) else (k,))) for k in self]

    def remove(self, *values: object) -> None:
        """Drop the series with these label values."""
        strings = tuple(map(str, values))
        self.pop(strings if len(strings) > 1 else strings[0], None)
        self._family.remove(self._service, *strings)


class _NoOp:
    """What a declared metric is when metrics are off: accepts every call, records nothing."""

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
_lock = threading.Lock()
#: Per registry: name -> (the declaration's spec, its family).
_declared = PerRegistry(lambda registry: dict[str, tuple[tuple[object, ...], MetricWrapperBase]]())


def _families(registry: CollectorRegistry, declared: Declared) -> MetricWrapperBase:
    """The family for a declaration, registered the first time it is bound."""
    with _lock:
        known = _declared(registry)
        if declared.name not in known:
            try:
                family = declared._make(registry)
            except ValueError as exc:  # "Duplicated timeseries": a name the registry has
                raise ValueError(f"metric {declared.name!r}: {exc}") from None
            known[declared.name] = (declared.spec(), family)
        spec, family = known[declared.name]
        if spec != declared.spec():
            raise ValueError(
                f"metric {declared.name!r} is declared twice, differently "
                "(kind, HELP, labels, unit or buckets): declare it once, or give each its own name"
            )
        return family
