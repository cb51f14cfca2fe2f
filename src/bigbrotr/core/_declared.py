"""Metric declarations: what ``bigbrotr.core.service_metrics`` offers a service class.

See that module for how a service declares and uses them; this one holds the
declarations' rules (names, labels, base units), binding them to a service,
and the one family per name that equal declarations share.
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

from bigbrotr.core.named_children import NOOP, Labelled
from bigbrotr.core.per_registry import PerRegistry

__all__ = ["Counter", "Declared", "Enum", "Gauge", "Histogram", "Info", "Summary"]

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
        # A labelled one's label sets include its __overflow__ child, once made.
        keys = bound.label_sets() if isinstance(bound, Labelled) else [(service,)]
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
