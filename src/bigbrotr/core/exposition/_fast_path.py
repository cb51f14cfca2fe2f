"""The fast path: prometheus_client's own metrics rendered straight from their children.

``prometheus_client.generate_latest`` collects every series into ``Sample``
tuples and label dicts, then formats each label set again on every scrape:
11-17 us per series, and so many containers that garbage collection stalls
every thread. A ``FamilyPlan`` instead reads a ``Counter``, ``Gauge`` or
``Histogram`` directly and keeps, per child, only its last line (for a
histogram, its block of lines) and the value object that line shows. An
unchanged series costs an identity test; a changed one reuses its line's
``name{labels} `` part and formats one float. The cache is three flat lists
per family (children, value objects, lines): no dict entry, no tuple, nothing
the garbage collector tracks per series, and one line shared by both formats.

This is the only module that reads prometheus_client's private attributes
(``_metrics``, ``_value``, ``_buckets`` ...). Nothing here decides whether to
trust them: the renderer's self-check compares this path's bytes with
prometheus_client's before using it.
"""

from __future__ import annotations

import re
import threading
import weakref
from collections.abc import Callable, Iterable
from typing import Any

import prometheus_client
from prometheus_client import metrics as client_metrics
from prometheus_client import values as client_values
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString as _untyped_float_to_go

__all__ = ["FamilyPlan", "collectors_of", "float_to_go", "plan_for", "supported"]

#: Names the fast path writes as they are in every format and escaping it serves.
#: ``:`` is left to prometheus_client, which rewrites it in OpenMetrics sample names.
_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
#: Not ``child.__dict__``: reading it would give every child a real, GC-tracked dict.
_GAUGE_SAMPLES = prometheus_client.Gauge._child_samples
_FAST_TYPES: tuple[type, ...] = (
    prometheus_client.Counter,
    prometheus_client.Gauge,
    prometheus_client.Histogram,
)
floatToGoString: Callable[[float], str] = _untyped_float_to_go
#: Never the key of a line: forces a set_function() gauge to be read every render.
_ALWAYS_READ = object()


def supported() -> bool:
    """Whether values live in this process (not in prometheus_client's multiprocess files)."""
    return client_values.ValueClass is client_values.MutexValue


def collectors_of(registry: Collector) -> tuple[list[Any], dict[str, str] | None] | None:
    """A plain registry's collectors in registration order and its target_info labels.

    None for anything whose ``collect()`` might yield something else: a
    collector that is not a registry, or a registry subclass that overrides
    ``collect``. Those are rendered from what ``collect()`` yields.
    """
    if not isinstance(registry, CollectorRegistry):
        return None
    if type(registry).collect is not CollectorRegistry.collect:
        return None
    with registry._lock:
        collectors = list(registry._collector_to_names)
    return collectors, registry.get_target_info()


def float_to_go(value: float) -> str:
    """Format a sample value exactly as this prometheus_client's ``floatToGoString``.

    A float whose ``repr`` has its '.' within the first 7 characters is
    written as ``repr`` by every version; everything else (large or special
    values, ints after a counter's reset(), other number types) is left to
    prometheus_client itself, whose rules have changed between versions.
    """
    if type(value) is float:
        text = repr(value)
        if 0 <= text.find(".") <= 6:
            return text
    return floatToGoString(value)


def _escape_label_value(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _escape_help(text: str, openmetrics: bool) -> str:
    text = text.replace("\\", r"\\").replace("\n", r"\n")
    return text.replace('"', r"\"") if openmetrics else text


def _exemplar(value: Any) -> str:
    exemplar = value._exemplar
    labels = ",".join(f'{k}="{_escape_label_value(v)}"' for k, v in sorted(exemplar.labels.items()))
    text = f" # {{{labels}}} {float_to_go(exemplar.value)}"
    return text if exemplar.timestamp is None else f"{text} {exemplar.timestamp}"


class FamilyPlan:
    """How one Counter, Gauge or Histogram renders, with its children's last lines.

    Attributes:
        name: The family name.
        kind: ``counter``, ``gauge`` or ``histogram``.
        members: The children rendered last time, in order.
        keys: Per child, the value object its line shows (for a histogram,
            its ``_sum`` value object and count).
        lines: Per child, its line (for a histogram, its text-format block).
    """

    __slots__ = (
        "bounds",
        "has_sum",
        "head_om",
        "head_text",
        "keys",
        "kind",
        "labelnames",
        "lines",
        "lock",
        "members",
        "name",
        "with_created",
    )

    def __init__(self, metric: Any) -> None:
        self.name: str = metric._name
        self.kind: str = metric._type
        self.labelnames: tuple[str, ...] = tuple(metric._labelnames)
        bounds: list[float] = getattr(metric, "_upper_bounds", [])
        self.bounds: tuple[str, ...] = tuple(float_to_go(bound) for bound in bounds)
        self.has_sum = bool(bounds) and bounds[0] >= 0  # as prometheus_client decides
        name, doc = self.name, metric._documentation
        unit = f"# UNIT {name} {metric._unit}\n" if metric._unit else ""
        help_om = _escape_help(doc, True)
        self.head_om = f"# HELP {name} {help_om}\n# TYPE {name} {self.kind}\n{unit}"
        text_name = name + "_total" if self.kind == "counter" else name
        help_text = _escape_help(doc, False)
        self.head_text = f"# HELP {text_name} {help_text}\n# TYPE {text_name} {self.kind}\n"
        self.lock = threading.Lock()
        self.members: list[Any] = []
        self.keys: list[Any] = []
        self.lines: list[str] = []
        self.with_created = client_metrics._use_created

    def _labels(self, values: Iterable[str], le: str | None = None) -> str:
        pairs = list(zip(self.labelnames, values, strict=True))
        if le is not None:
            pairs.append(("le", le))
        if not pairs:
            return ""
        body = ",".join(f'{k}="{_escape_label_value(v)}"' for k, v in sorted(pairs))
        return "{" + body + "}"

    def children(self, metric: Any) -> list[Any]:
        """A snapshot of the metric's children (itself when it has no labels)."""
        if not self.labelnames:
            return [metric]
        with metric._lock:
            return list(metric._metrics.values())

    def render(self, metric: Any, openmetrics: bool, out: list[str]) -> None:
        """Append the family's header and sample lines for ``metric`` to ``out``."""
        with self.lock:  # renders from other threads share this plan's cache
            use_created = client_metrics._use_created  # read once: it may be toggled
            if use_created is not self.with_created:
                self.members, self.keys, self.lines = [], [], []
                self.with_created = use_created
            self._align(self.children(metric))
            out.append(self.head_om if openmetrics else self.head_text)
            created = openmetrics and use_created
            if self.kind == "histogram":
                self._render_histograms(openmetrics, created, out)
            else:
                self._refresh_values()
                if openmetrics and self.kind == "counter":
                    self._render_counters_om(created, out)
                else:
                    out.extend(self.lines)

    def _align(self, children: list[Any]) -> None:
        """Make ``members`` the current children, keeping the lines of those still there."""
        members = self.members
        if members == children:  # identity per element: children define no __eq__
            return
        if children[: len(members)] == members:
            fresh = children[len(members) :]  # the common change: new label sets appended
        else:  # label sets were removed: keep what is left, in the new order
            kept = {id(child): index for index, child in enumerate(members)}
            keys, lines = self.keys, self.lines
            order = [kept.get(id(child)) for child in children]
            self.keys = [keys[i] if i is not None else _ALWAYS_READ for i in order]
            self.lines = [lines[i] if i is not None else "" for i in order]
            self.members = list(children)
            for index, child in enumerate(children):
                if order[index] is None:
                    self.lines[index] = self._first_line(child)
            return
        for child in fresh:
            members.append(child)
            self.keys.append(_ALWAYS_READ)
            self.lines.append(self._first_line(child))

    def _first_line(self, child: Any) -> str:
        """A placeholder line that carries the child's ``name{labels} `` part."""
        if self.kind == "histogram":
            return ""
        suffix = "_total" if self.kind == "counter" else ""
        return f"{self.name}{suffix}{self._labels(child._labelvalues)} NaN\n"

    def _refresh_values(self) -> None:
        """Re-format the lines of counters and gauges whose value changed.

        The hottest loop of a render, so ``float_to_go`` is inlined.
        """
        keys, lines = self.keys, self.lines
        gauge = self.kind == "gauge"
        for index, child in enumerate(self.members):
            if gauge and child._child_samples.__func__ is not _GAUGE_SAMPLES:
                # set_function() replaced the gauge's value with a callback
                line = lines[index]
                value = child._child_samples()[0].value
                lines[index] = f"{line[: line.rindex(' ') + 1]}{float_to_go(value)}\n"
                keys[index] = _ALWAYS_READ
                continue
            number = child._value._value
            if number is not keys[index]:
                keys[index] = number
                text = repr(number)  # float_to_go, inlined
                if type(number) is not float or not 0 <= text.find(".") <= 6:
                    text = floatToGoString(number)
                line = lines[index]
                lines[index] = f"{line[: line.rindex(' ') + 1]}{text}\n"

    def _render_counters_om(self, created: bool, out: list[str]) -> None:
        """Counter lines with exemplars and ``_created`` lines, as OpenMetrics writes them."""
        append = out.append
        total_prefix = len(self.name) + len("_total")
        for child, line in zip(self.members, self.lines, strict=True):
            value = child._value
            if value._exemplar is not None:
                append(f"{line[:-1]}{_exemplar(value)}\n")
            else:
                append(line)
            if created:
                labels = line[total_prefix : line.rindex(" ")]
                append(f"{self.name}_created{labels} {float_to_go(child._created)}\n")

    def _render_histograms(self, openmetrics: bool, created: bool, out: list[str]) -> None:
        """Each child's block, rebuilt only when an observation changed it."""
        keys, lines = self.keys, self.lines
        for index, child in enumerate(self.members):
            buckets = child._buckets
            # observe() updates _sum, then a bucket, then maybe its exemplar, with
            # no common lock. The key holds the _sum object and the count, so a
            # render between two of those steps is not kept once it completes.
            counts = [bucket._value for bucket in buckets]
            key = (child._sum._value, sum(counts))
            cached = keys[index]
            if cached is _ALWAYS_READ or cached[0] is not key[0] or cached[1] != key[1]:
                lines[index] = self._histogram_block(child, counts, key[0])
                keys[index] = key
            block = lines[index]
            if openmetrics:
                if any(bucket._exemplar is not None for bucket in buckets):
                    block = self._histogram_block(child, counts, key[0], exemplars=True)
                if created:
                    labels = self._labels(child._labelvalues)
                    block += f"{self.name}_created{labels} {float_to_go(child._created)}\n"
            out.append(block)

    def _histogram_block(
        self, child: Any, counts: list[float], total: float, exemplars: bool = False
    ) -> str:
        """A histogram child's bucket, count and sum lines (with bucket exemplars if asked)."""
        values = child._labelvalues
        name, fmt = self.name, float_to_go
        lines = []
        acc = 0.0
        for le, count, bucket in zip(self.bounds, counts, child._buckets, strict=True):
            acc += count
            extra = _exemplar(bucket) if exemplars and bucket._exemplar is not None else ""
            lines.append(f"{name}_bucket{self._labels(values, le)} {fmt(acc)}{extra}\n")
        plain = self._labels(values)
        lines.append(f"{name}_count{plain} {fmt(acc)}\n")
        if self.has_sum:
            lines.append(f"{name}_sum{plain} {fmt(total)}\n")
        return "".join(lines)


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
            type(collector) in _FAST_TYPES
            and _NAME.fullmatch(collector._name)
            and all(_NAME.fullmatch(label) for label in collector._labelnames)
        ):
            plan = FamilyPlan(collector)
        _plans[collector] = plan
        return plan
