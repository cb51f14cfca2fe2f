"""The fast path: prometheus_client's own metrics rendered straight from their children.

``prometheus_client.generate_latest`` collects every series into ``Sample``
tuples and label dicts, then formats each label set again on every scrape:
11-17 us per series, and so many containers that garbage collection stalls
every thread. A plan instead reads a ``Counter``, ``Gauge`` or ``Histogram``
directly. It keeps each child's ``name{labels} `` prefix (label values never
change for a child) in a flat list shared by both formats, and formats the
values of a batch of children with C-level ``map``/``zip`` calls, so a series
costs a few hundred nanoseconds and allocates only strings, which the garbage
collector does not track. Counters keep their ``_created`` values' text in one
string per family; histograms are rebuilt every render (their blocks change
with every observation and would cost more memory than they save time).

This is the only module that reads prometheus_client's private attributes
(``_metrics``, ``_value``, ``_buckets`` ...). Nothing here decides whether to
trust them: the renderer's self-check compares this path's bytes with
prometheus_client's before using it.
"""

from __future__ import annotations

import math
import operator
import re
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from itertools import chain, repeat
from typing import Any

import prometheus_client
from prometheus_client import metrics as client_metrics
from prometheus_client import values as client_values
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString as _untyped_float_to_go

__all__ = [
    "FamilyPlan",
    "collectors_of",
    "float_to_go",
    "let_others_run",
    "plan_for",
    "render_starts",
    "supported",
]

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
#: Children per batch: bounds how long one C-level call holds the GIL (~1 ms).
_BATCH = 4096
_NEWLINES = repeat("\n")
#: Stands for the metric itself in ``members`` (an unlabelled metric is its own only
#: child), so that a plan never holds a strong reference to its weakly-keyed metric.
_ITSELF = object()
#: A render hands the GIL over at most this often (see ``let_others_run``).
_YIELD_EVERY = 0.002
_last_yield = threading.local()
floatToGoString: Callable[[float], str] = _untyped_float_to_go


def render_starts() -> None:
    """Start the clock of ``let_others_run`` for a render in this thread."""
    _last_yield.at = time.perf_counter()


def let_others_run() -> None:
    """Hand the GIL to a thread waiting for it (the service's event loop), every 2 ms.

    A thread that wants the GIL waits up to the switch interval (5 ms) before
    asking for it, so a long render that never blocks would make the event
    loop wait that long at every wake-up. Called between batches; it sleeps
    only once the render has run 2 ms since it started or last slept, so a
    small render never waits to get the GIL back.
    """
    now = time.perf_counter()
    if now - getattr(_last_yield, "at", now) >= _YIELD_EVERY:
        time.sleep(0.00005)
        _last_yield.at = time.perf_counter()


def supported() -> bool:
    """Whether values live in this process (not in prometheus_client's multiprocess files)."""
    return client_values.ValueClass is client_values.MutexValue


def registered_names(registry: Collector) -> frozenset[str]:
    """The sample names a plain registry's collectors declared (empty when unknown)."""
    names = getattr(registry, "_names_to_collectors", None)  # absent: nothing known
    if not isinstance(registry, CollectorRegistry) or not isinstance(names, dict):
        return frozenset()
    with registry._lock:
        return frozenset(names)


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

    Every version writes a float in (-inf, 1e6) as its ``repr``; everything
    else (large or special values, ints after a counter's reset(), other
    number types) is left to prometheus_client, whose rules have changed.
    """
    if type(value) is float and -math.inf < value < 1e6:
        return repr(value)
    return floatToGoString(value)


def _go_texts(numbers: list[Any]) -> list[str]:
    """``float_to_go`` of each number, with C-level loops when none is special."""
    floats = list(map(float, numbers))
    texts = list(map(repr, floats))
    if floats and not (-math.inf < sum(floats) < math.inf and max(floats) < 1e6):
        texts = [
            text if -math.inf < value < 1e6 else floatToGoString(value)
            for value, text in zip(floats, texts, strict=True)
        ]
    return texts


def _escape_label_value(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _escape_help(text: str, openmetrics: bool) -> str:
    text = text.replace("\\", r"\\").replace("\n", r"\n")
    return text.replace('"', r"\"") if openmetrics else text


def _exemplar(exemplar: Any) -> str:
    labels = ",".join(f'{k}="{_escape_label_value(v)}"' for k, v in sorted(exemplar.labels.items()))
    text = f" # {{{labels}}} {float_to_go(exemplar.value)}"
    return text if exemplar.timestamp is None else f"{text} {exemplar.timestamp}"


class FamilyPlan:
    """How one Counter, Gauge or Histogram renders.

    Attributes:
        name: The family name.
        kind: ``counter``, ``gauge`` or ``histogram``.
    """

    def __init__(self, metric: Any) -> None:
        self.name: str = metric._name
        self.kind: str = metric._type
        names = tuple(metric._labelnames)
        #: Label values are written in label-name order, as prometheus_client sorts them.
        self._order = sorted(range(len(names)), key=names.__getitem__)
        self._sorted_names = [names[i] for i in self._order]
        self._le_at = sum(1 for label in names if label < "le")
        name, doc = self.name, metric._documentation
        unit = f"# UNIT {name} {metric._unit}\n" if metric._unit else ""
        help_om = _escape_help(doc, True)
        self._head_om = f"# HELP {name} {help_om}\n# TYPE {name} {self.kind}\n{unit}"
        text_name = name + "_total" if self.kind == "counter" else name
        help_text = _escape_help(doc, False)
        self._head_text = f"# HELP {text_name} {help_text}\n# TYPE {text_name} {self.kind}\n"

    def label_pairs(self, child: Any) -> list[str]:
        """The child's ``name="value"`` pairs, escaped, in label-name order."""
        values = child._labelvalues
        return [
            f'{name}="{_escape_label_value(values[i])}"'
            for name, i in zip(self._sorted_names, self._order, strict=True)
        ]

    def render(self, metric: Any, openmetrics: bool, out: list[str]) -> None:
        """Append the family's header and sample lines for ``metric`` to ``out``."""
        out.append(self._head_om if openmetrics else self._head_text)
        created = openmetrics and client_metrics._use_created
        self._render(metric, _children(metric), openmetrics, created, out)

    def _render(
        self, metric: Any, children: list[Any], openmetrics: bool, created: bool, out: list[str]
    ) -> None:
        """Append the sample lines of ``children``."""
        raise NotImplementedError


def _children(metric: Any) -> list[Any]:
    """A snapshot of a metric's children (itself when it has no labels)."""
    if not metric._labelnames:
        return [metric]
    with metric._lock:
        return list(metric._metrics.values())


class _ValuePlan(FamilyPlan):
    """A Counter or Gauge: one ``name{labels} value`` line per child (two with ``_created``).

    Values (and set_function callbacks) are read before the plan's lock is
    taken, as prometheus_client reads them holding no lock of its own, so a
    callback that takes an application lock cannot deadlock with a render.

    Attributes:
        members: The children of the last render, in order (``_ITSELF`` for
            the metric itself); ``prefixes`` and ``created_keys`` follow it.
        prefixes: Per child, ``name{labels} `` (``name_total`` for a counter).
        created_keys: Per child, the ``_created`` object its text was made from.
        created_blob: The ``_created`` texts, newline-separated: one string, not
            one object per child.
    """

    def __init__(self, metric: Any) -> None:
        super().__init__(metric)
        self.counter = self.kind == "counter"
        self.sample_name = self.name + ("_total" if self.counter else "")
        self.lock = threading.Lock()
        self.members: list[Any] = []
        self.prefixes: list[str] = []
        self.created_keys: list[Any] = []
        self.created_blob = ""

    def _render(
        self, metric: Any, children: list[Any], openmetrics: bool, created: bool, out: list[str]
    ) -> None:
        numbers = self._values(children)
        exemplars = [child._value._exemplar for child in children] if self.counter else []
        with self.lock:  # renders from other threads share this plan's cache
            self._align(metric, children)
            prefixes = self.prefixes
            created_texts = self._created_texts(children) if self.counter and created else None
        created_name = repeat(self.name + "_created")
        cut = slice(len(self.sample_name), None)
        for start in range(0, len(children), _BATCH):
            let_others_run()
            end = start + _BATCH
            texts = _go_texts(numbers[start:end])
            if openmetrics and exemplars[start:end].count(None) != len(texts):
                for index, exemplar in enumerate(exemplars[start:end]):
                    if exemplar is not None:
                        texts[index] += _exemplar(exemplar)
            heads = prefixes[start:end]
            if created_texts is None:
                out.extend(chain.from_iterable(zip(heads, texts, _NEWLINES, strict=False)))
                continue
            labels = map(operator.getitem, heads, repeat(cut))  # "{labels} "
            lines = zip(
                heads, texts, _NEWLINES, created_name, labels, created_texts[start:end], _NEWLINES,
                strict=False,
            )  # fmt: skip
            out.extend(chain.from_iterable(lines))

    def _values(self, children: list[Any]) -> list[Any]:
        if self.counter:
            return [child._value._value for child in children]
        gauge = _GAUGE_SAMPLES  # set_function() swaps a child's _child_samples for a callback
        return [
            child._value._value
            if child._child_samples.__func__ is gauge
            else child._child_samples()[0].value
            for child in children
        ]

    def _align(self, metric: Any, children: list[Any]) -> None:
        """Make ``members`` the current children, keeping the prefixes of those kept.

        prometheus_client appends new label sets, so the common change extends
        the cache; after a removal it is rebuilt.
        """
        current = [_ITSELF if child is metric else child for child in children]
        if self.members == current:  # identity per element: children define no __eq__
            return
        if current[: len(self.members)] != self.members:
            self.members, self.prefixes = [], []
            self.created_keys, self.created_blob = [], ""
        fresh = children[len(self.members) :]
        self.members = current
        self._extend(fresh)

    def _extend(self, children: list[Any]) -> None:
        """Append the prefixes of new children, formatted with C-level loops."""
        pairs = ",".join(f'{name}="%s"' for name in self._sorted_names)
        template = f"{self.sample_name}{{{pairs}}} " if pairs else f"{self.sample_name} "
        reorder = operator.itemgetter(*self._order) if self._order != sorted(self._order) else None
        for start in range(0, len(children), _BATCH):
            let_others_run()
            values = [child._labelvalues for child in children[start : start + _BATCH]]
            if reorder is not None:  # label values in label-name order
                values = list(map(reorder, values))
            specials = "\x00".join(chain.from_iterable(values))
            if "\\" in specials or "\n" in specials or '"' in specials:
                values = [tuple(map(_escape_label_value, labels)) for labels in values]
            self.prefixes.extend(map(template.__mod__, values))

    def _created_texts(self, children: list[Any]) -> list[str]:
        """Each child's ``_created`` text, formatted again only when it changed (reset())."""
        current = [child._created for child in children]
        keys = self.created_keys
        if len(keys) == len(current) and all(map(operator.is_, current, keys)):
            return self.created_blob.split("\n")
        old = self.created_blob.split("\n") if keys else []
        texts = [
            old[index] if index < len(keys) and value is keys[index] else float_to_go(value)
            for index, value in enumerate(current)
        ]
        self.created_keys, self.created_blob = current, "\n".join(texts)
        return texts


class _HistogramPlan(FamilyPlan):
    """A Histogram: each child's lines, built afresh every render, with no cache.

    A block of bucket lines is large and changes with every observation, so
    caching it would cost more memory than it saves time: a histogram child
    costs a few microseconds here against prometheus_client's hundred or more.
    """

    def __init__(self, metric: Any) -> None:
        super().__init__(metric)
        bounds: list[float] = metric._upper_bounds
        self.bounds = [float_to_go(bound) for bound in bounds]
        self.has_sum = bounds[0] >= 0  # as prometheus_client decides

    def _render(
        self, metric: Any, children: list[Any], openmetrics: bool, created: bool, out: list[str]
    ) -> None:
        for index, child in enumerate(children):
            if index % 256 == 0:
                let_others_run()
            buckets = child._buckets
            counts = [bucket._value for bucket in buckets]
            exemplars = [bucket._exemplar for bucket in buckets] if openmetrics else []
            if exemplars.count(None) == len(exemplars):
                exemplars = []
            pairs = self.label_pairs(child)
            out.append(self._block(pairs, counts, child._sum._value, exemplars))
            if created:
                labels = "{" + ",".join(pairs) + "}" if pairs else ""
                out.append(f"{self.name}_created{labels} {float_to_go(child._created)}\n")

    def _block(
        self, pairs: list[str], counts: list[float], total: float, exemplars: Sequence[Any]
    ) -> str:
        """A child's bucket, count and sum lines (with bucket exemplars if given)."""
        before, after = ",".join(pairs[: self._le_at]), ",".join(pairs[self._le_at :])
        bucket_open = f'{self.name}_bucket{{{before}{"," if before else ""}le="'
        bucket_close = f'"{"," if after else ""}{after}}} '
        plain = "{" + ",".join(pairs) + "}" if pairs else ""
        lines = []
        acc = 0.0
        for index, (le, count) in enumerate(zip(self.bounds, counts, strict=True)):
            acc += count
            extra = ""
            if exemplars and exemplars[index] is not None:
                extra = _exemplar(exemplars[index])
            lines.append(f"{bucket_open}{le}{bucket_close}{float_to_go(acc)}{extra}\n")
        lines.append(f"{self.name}_count{plain} {float_to_go(acc)}\n")
        if self.has_sum:
            lines.append(f"{self.name}_sum{plain} {float_to_go(total)}\n")
        return "".join(lines)


_plans: weakref.WeakKeyDictionary[Any, FamilyPlan | None] = weakref.WeakKeyDictionary()
_plans_lock = threading.Lock()


def plan_for(collector: Any) -> FamilyPlan | None:
    """The fast-path plan for ``collector``, or None if it must go the generic way."""
    if type(collector) not in _FAST_TYPES:  # (and so maybe not weak-referenceable)
        return None
    with _plans_lock:
        try:
            return _plans[collector]
        except KeyError:
            pass
        plan: FamilyPlan | None = None
        names = (collector._name, *collector._labelnames)
        # A labelled child registered alone is written without labels: left to the generic way.
        if not collector._labelvalues and all(_NAME.fullmatch(name) for name in names):
            kind = _HistogramPlan if collector._type == "histogram" else _ValuePlan
            plan = kind(collector)
        _plans[collector] = plan
        return plan
