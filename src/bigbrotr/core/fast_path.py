"""The fast path: prometheus_client's own metrics rendered straight from their children.

``prometheus_client.generate_latest`` collects every series into ``Sample``
tuples and label dicts, then formats each label set again on every scrape. That
costs 11-17 us per series and allocates so many containers that garbage
collection stalls every thread. A ``FamilyPlan`` instead reads a ``Counter``,
``Gauge`` or ``Histogram`` directly, keeps each child's formatted
name-and-labels prefix (label values never change for a child) and its last
line (until the value changes), and so per changed series only reads a float
and formats it. It allocates strings and tuples of strings, which the garbage
collector does not keep tracking, and runs as plain Python bytecode, which
gives up the GIL every switch interval.

Everything in this module reads prometheus_client internals (``_metrics``,
``_value``, ``_buckets`` ...). ``FAST_PATH`` is False when they are not as
expected, and every family then goes the generic way;
``tests/test_renderer.py`` fails loudly when that happens.
"""

from __future__ import annotations

import contextlib
import math
import re
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import prometheus_client
from prometheus_client import metrics as client_metrics
from prometheus_client import values as client_values
from prometheus_client.registry import CollectorRegistry

__all__ = ["FAST_PATH", "FamilyPlan", "float_to_go", "plan_for"]

_LEGACY_METRIC = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LEGACY_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_SPECIAL_FLOATS = {"inf": "+Inf", "-inf": "-Inf", "nan": "NaN"}
#: Not ``child.__dict__``: reading it would give every child a real, GC-tracked dict.
_GAUGE_SAMPLES = prometheus_client.Gauge._child_samples


def float_to_go(value: float) -> str:
    """Format a sample value exactly as prometheus_client's ``floatToGoString``.

    Short reprs (the common case) return after one length check.
    """
    text = repr(float(value))
    if len(text) < 8:
        return _SPECIAL_FLOATS.get(text, text)
    dot = text.find(".")
    if dot > 6 and text[0] != "-":  # >= 1e6 without an exponent: Go uses one
        mantissa = f"{text[0]}.{text[1:dot]}{text[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return text


def _escape_label_value(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _escape_help(text: str, openmetrics_format: bool) -> str:
    text = text.replace("\\", r"\\").replace("\n", r"\n")
    return text.replace('"', r"\"") if openmetrics_format else text


class FamilyPlan:
    """How one Counter, Gauge or Histogram renders, with its children's cached lines."""

    __slots__ = (
        "cache",
        "has_sum",
        "help",
        "kind",
        "labelnames",
        "lock",
        "name",
        "unit",
        "upper_bounds",
    )

    def __init__(self, metric: Any) -> None:
        self.name: str = metric._name
        self.kind: str = metric._type
        self.help: str = metric._documentation
        self.unit: str = metric._unit
        self.labelnames: tuple[str, ...] = tuple(metric._labelnames)
        bounds: list[float] = getattr(metric, "_upper_bounds", [])
        self.upper_bounds: tuple[str, ...] = tuple(float_to_go(bound) for bound in bounds)
        self.has_sum = bool(bounds) and bounds[0] >= 0  # as prometheus_client decides
        self.cache = _Cache(client_metrics._use_created)
        self.lock = threading.Lock()

    def header(self, openmetrics_format: bool) -> str:
        """The family's ``# HELP`` / ``# TYPE`` (/ ``# UNIT``) lines."""
        doc = _escape_help(self.help, openmetrics_format)
        if openmetrics_format:
            unit = f"# UNIT {self.name} {self.unit}\n" if self.unit else ""
            return f"# HELP {self.name} {doc}\n# TYPE {self.name} {self.kind}\n{unit}"
        name = self.name + "_total" if self.kind == "counter" else self.name
        return f"# HELP {name} {doc}\n# TYPE {name} {self.kind}\n"

    def render(self, metric: Any, openmetrics_format: bool, out: list[str]) -> None:
        """Append the family's sample lines for ``metric`` (this plan's collector) to ``out``."""
        with self.lock:  # renders from other threads share this plan's cache
            _render_plan(self, metric, openmetrics_format, out)

    def _labels(self, values: Sequence[str], extra: tuple[str, str] | None = None) -> str:
        pairs = list(zip(self.labelnames, values, strict=True))
        if extra:
            pairs.append(extra)
        if not pairs:
            return ""
        body = ",".join(f'{k}="{_escape_label_value(v)}"' for k, v in sorted(pairs))
        return "{" + body + "}"

    def child_prefixes(self, child: Any) -> tuple[str, ...]:
        """Every ``name{labels} `` this child's lines start with, built once per child."""
        values = child._labelvalues
        plain = self._labels(values)
        name = self.name
        if self.kind == "counter":
            return (f"{name}_total{plain} ", f"{name}_created{plain} ")
        if self.kind == "gauge":
            return (f"{name}{plain} ",)
        buckets = tuple(
            f"{name}_bucket{self._labels(values, ('le', le))} " for le in self.upper_bounds
        )
        return (*buckets, f"{name}_count{plain} ", f"{name}_sum{plain} ", f"{name}_created{plain} ")

    def prefixes_of(self, child: Any) -> tuple[str, ...]:
        """``child_prefixes(child)``, from the cache once built."""
        prefixes = self.cache.prefixes.get(child)
        if prefixes is None:
            prefixes = self.cache.prefixes[child] = self.child_prefixes(child)
        return prefixes

    def children(self, metric: Any) -> list[Any]:
        """A snapshot of the metric's children (itself when it has no labels)."""
        if not self.labelnames:
            return [metric]
        with metric._lock:
            return list(metric._metrics.values())


def _exemplar(value: Any) -> str:
    exemplar = value._exemplar
    if exemplar is None:
        return ""
    labels = ",".join(f'{k}="{_escape_label_value(v)}"' for k, v in sorted(exemplar.labels.items()))
    text = f" # {{{labels}}} {float_to_go(exemplar.value)}"
    return text if exemplar.timestamp is None else f"{text} {exemplar.timestamp}"


class _Cache:
    """Each child's prefixes and last rendered lines, with the values they show.

    A line is reused while the value object it was made from is still the one
    in the child (``is``, not ``==``: every update stores a new float, and
    ``-0.0 == 0.0`` would reuse the wrong text). Idle series, the majority in
    large registries, then cost one dict lookup. Every entry is a tuple of
    floats and strings, which the garbage collector stops tracking at its first
    look, so even the first render of a large registry (which fills the cache)
    does not set off a full collection that would stall the service's thread.

    Attributes:
        prefixes: child -> the ``name{labels} `` each of its lines starts with.
        lines: child -> (value object, its line); for a histogram, (its
            ``_sum`` and bucket value objects, its text-format block).
        blocks_om: histogram child -> (those value objects, OpenMetrics block,
            bucket exemplars).
        created: child -> (``_created`` object, its line).
    """

    def __init__(self, with_created: bool) -> None:
        self.prefixes: dict[Any, tuple[str, ...]] = {}
        self.lines: dict[Any, tuple[Any, str]] = {}
        self.blocks_om: dict[Any, tuple[tuple[Any, ...], str, tuple[Any, ...]]] = {}
        self.created: dict[Any, tuple[Any, str]] = {}
        self.with_created = with_created

    def keep_only(self, children: list[Any]) -> None:
        """Forget children whose label sets were removed."""
        self.prefixes = {c: self.prefixes[c] for c in children if c in self.prefixes}
        self.lines = {c: self.lines[c] for c in children if c in self.lines}
        self.blocks_om = {c: self.blocks_om[c] for c in children if c in self.blocks_om}
        self.created = {c: self.created[c] for c in children if c in self.created}

    def created_line(self, child: Any) -> str:
        """The child's ``_created`` line (its prefixes are cached by then)."""
        created = child._created
        entry = self.created.get(child)
        if entry is None or entry[0] is not created:
            line = f"{self.prefixes[child][-1]}{float_to_go(created)}\n"
            entry = self.created[child] = (created, line)
        return entry[1]


def _histogram_block(plan: FamilyPlan, child: Any, om: bool, created: bool) -> str:
    """All lines of one histogram child; reused until an observation changes them."""
    cache = plan.cache
    buckets = child._buckets
    # observe() updates _sum, then a bucket, then maybe its exemplar, with no
    # common lock: the key holds all of them, so a render between two of those
    # steps is not kept once the observation completes.
    key = (child._sum._value, *(bucket._value for bucket in buckets))
    exemplars: tuple[Any, ...] = ()
    if om:
        exemplars = tuple(bucket._exemplar for bucket in buckets)
        cached = cache.blocks_om.get(child)
        if cached is not None and _same(cached[0], key) and cached[2] == exemplars:
            return cached[1]
    else:
        entry = cache.lines.get(child)
        if entry is not None and _same(entry[0], key):
            return entry[1]
    prefixes = plan.prefixes_of(child)
    fmt = float_to_go
    lines = []
    acc = 0.0
    for index, bucket in enumerate(buckets):
        acc += bucket._value
        ex = _exemplar(bucket) if om else ""
        lines.append(f"{prefixes[index]}{fmt(acc)}{ex}\n")
    count = len(buckets)
    lines.append(f"{prefixes[count]}{fmt(acc)}\n")
    if plan.has_sum:
        lines.append(f"{prefixes[count + 1]}{fmt(key[0])}\n")
    if created:
        lines.append(cache.created_line(child))
    block = "".join(lines)
    if om:
        cache.blocks_om[child] = (key, block, exemplars)
    else:
        cache.lines[child] = (key, block)
    return block


def _same(cached: tuple[Any, ...], current: tuple[Any, ...]) -> bool:
    """Whether two value tuples hold the very same objects (``is``, see ``_Cache``)."""
    return all(a is b for a, b in zip(cached, current, strict=True))


def _render_plan(plan: FamilyPlan, metric: Any, om: bool, out: list[str]) -> None:
    """Append ``plan``'s lines to ``out``: the per-series loops of the fast path.

    Unchanged series cost one dict lookup; the loops are split by kind so that
    no per-series test is spent on it.
    """
    use_created = client_metrics._use_created  # read once: another thread may toggle it
    created = om and use_created
    if plan.cache.with_created is not use_created:
        plan.cache = _Cache(use_created)
    cache = plan.cache
    children = plan.children(metric)
    if len(cache.prefixes) > len(children):
        cache.keep_only(children)
    lines = cache.lines
    fmt = float_to_go
    append = out.append
    if plan.kind == "histogram":
        for child in children:
            append(_histogram_block(plan, child, om, created))
        return
    counter = plan.kind == "counter"
    for child in children:
        if not counter and child._child_samples.__func__ is not _GAUGE_SAMPLES:
            # set_function() replaced the gauge's value with a callback
            append(f"{plan.prefixes_of(child)[0]}{fmt(child._child_samples()[0].value)}\n")
            continue
        value = child._value
        number = value._value
        entry = lines.get(child)
        if entry is None or number is not entry[0]:
            entry = lines[child] = (number, f"{plan.prefixes_of(child)[0]}{fmt(number)}\n")
        if counter and om and value._exemplar is not None:
            append(f"{plan.prefixes_of(child)[0]}{fmt(number)}{_exemplar(value)}\n")
        else:
            append(entry[1])
        if counter and created:
            append(cache.created_line(child))


_FAST_TYPES: tuple[type, ...] = (
    prometheus_client.Counter,
    prometheus_client.Gauge,
    prometheus_client.Histogram,
)
_plans: weakref.WeakKeyDictionary[Any, FamilyPlan | None] = weakref.WeakKeyDictionary()
_plans_lock = threading.Lock()


def plan_for(collector: Any) -> FamilyPlan | None:
    """The fast-path plan for ``collector``, or None if it must go the generic way."""
    with _plans_lock:
        try:
            return _plans[collector]
        except (KeyError, TypeError):  # TypeError: not weak-referenceable, so not ours
            pass
        plan: FamilyPlan | None = None
        if (
            FAST_PATH
            and type(collector) in _FAST_TYPES
            and _LEGACY_METRIC.match(collector._name)
            and all(_LEGACY_LABEL.match(label) for label in collector._labelnames)
        ):
            plan = FamilyPlan(collector)
        with contextlib.suppress(TypeError):
            _plans[collector] = plan
        return plan


def _probe_internals() -> bool:
    """Whether prometheus_client's objects still look as the fast path reads them."""
    registry = CollectorRegistry()
    try:
        labelled = prometheus_client.Counter("probe", "p", ["l"], registry=registry)
        child = labelled.labels("v")
        child.inc(2)
        histogram = prometheus_client.Histogram("probe_h", "p", registry=registry, buckets=(1,))
        histogram.observe(0.5)
        gauge = prometheus_client.Gauge("probe_g", "p", registry=registry)
        checks: list[Callable[[], bool]] = [
            lambda: list(registry._collector_to_names)[:1] == [labelled],
            lambda: isinstance(registry._lock, type(threading.Lock())),
            lambda: list(labelled._metrics.values()) == [child],
            lambda: child._labelvalues == ("v",) and labelled._labelnames == ("l",),
            lambda: client_values.ValueClass is client_values.MutexValue,
            lambda: child._value._value == 2.0 and child._value._exemplar is None,
            lambda: (
                isinstance(child._created, float) and isinstance(client_metrics._use_created, bool)
            ),
            lambda: [b._value for b in histogram._buckets] == [1.0, 0.0],
            lambda: histogram._upper_bounds == [1.0, math.inf] and histogram._sum._value == 0.5,
            lambda: gauge._value._value == 0.0,
            lambda: getattr(gauge._child_samples, "__func__", None) is _GAUGE_SAMPLES,
            lambda: (
                (labelled._name, labelled._type, labelled._documentation, labelled._unit)
                == ("probe", "counter", "p", "")
            ),
        ]
        return all(check() for check in checks)
    except (AttributeError, TypeError, ValueError):
        return False


FAST_PATH: bool = _probe_internals()
