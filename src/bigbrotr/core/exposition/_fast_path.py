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
string per family; histograms keep each child's block of lines until an
observation changes it.

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
import weakref
from collections.abc import Callable, Sequence
from itertools import chain, repeat
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
#: Children per batch: bounds how long one C-level call holds the GIL (~1 ms).
_BATCH = 4096
_NEWLINES = repeat("\n")
floatToGoString: Callable[[float], str] = _untyped_float_to_go


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
    """How one Counter, Gauge or Histogram renders; subclasses keep per-child caches.

    Attributes:
        name: The family name.
        kind: ``counter``, ``gauge`` or ``histogram``.
        members: The children seen by the last render, in order; every cache
            list of a subclass is aligned with it.
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
        self._has_labels = bool(names)
        self._lock = threading.Lock()
        self._with_created = client_metrics._use_created
        self.members: list[Any] = []

    def label_pairs(self, child: Any) -> list[str]:
        """The child's ``name="value"`` pairs, escaped, in label-name order."""
        values = child._labelvalues
        return [
            f'{name}="{_escape_label_value(values[i])}"'
            for name, i in zip(self._sorted_names, self._order, strict=True)
        ]

    def render(self, metric: Any, openmetrics: bool, out: list[str]) -> None:
        """Append the family's header and sample lines for ``metric`` to ``out``."""
        with self._lock:  # renders from other threads share this plan's cache
            use_created = client_metrics._use_created  # read once: it may be toggled
            if use_created is not self._with_created:
                self._align([])
                self._with_created = use_created
            self._align(self._children(metric))
            out.append(self._head_om if openmetrics else self._head_text)
            self._render(openmetrics, openmetrics and use_created, out)

    def _children(self, metric: Any) -> list[Any]:
        """A snapshot of the metric's children (itself when it has no labels)."""
        if not self._has_labels:
            return [metric]
        with metric._lock:
            return list(metric._metrics.values())

    def _align(self, children: list[Any]) -> None:
        """Make ``members`` the current children, keeping what is cached for those kept.

        New label sets are appended by prometheus_client, so the common change
        extends the caches; after a removal they are rebuilt.
        """
        members = self.members
        if members == children:  # identity per element: children define no __eq__
            return
        if children[: len(members)] != members:
            members = self.members = []
            self._forget()
        fresh = children[len(members) :]
        members.extend(fresh)
        self._extend(fresh)

    def _forget(self) -> None:
        """Drop every per-child cache."""
        raise NotImplementedError

    def _extend(self, children: list[Any]) -> None:
        """Add cache entries for children appended to ``members``."""
        raise NotImplementedError

    def _render(self, openmetrics: bool, created: bool, out: list[str]) -> None:
        """Append the sample lines of ``members``."""
        raise NotImplementedError


class _ValuePlan(FamilyPlan):
    """A Counter or Gauge: one ``name{labels} value`` line per child (two with ``_created``).

    Attributes:
        prefixes: Per child, ``name{labels} `` (``name_total`` for a counter).
        created_keys: Per child, the ``_created`` object its text was made from.
        created_blob: The ``_created`` texts, newline-separated: one string, not
            one object per child.
    """

    def __init__(self, metric: Any) -> None:
        super().__init__(metric)
        self.counter = self.kind == "counter"
        self.sample_name = self.name + ("_total" if self.counter else "")
        self.prefixes: list[str] = []
        self.created_keys: list[Any] = []
        self.created_blob = ""

    def _forget(self) -> None:
        self.prefixes, self.created_keys, self.created_blob = [], [], ""

    def _extend(self, children: list[Any]) -> None:
        name = self.sample_name
        for child in children:
            pairs = self.label_pairs(child)
            labels = "{" + ",".join(pairs) + "}" if pairs else ""
            self.prefixes.append(f"{name}{labels} ")

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

    def _created_texts(self) -> list[str]:
        """Each child's ``_created`` text, formatted again only when it changed (reset())."""
        current = [child._created for child in self.members]
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

    def _render(self, openmetrics: bool, created: bool, out: list[str]) -> None:
        members, prefixes = self.members, self.prefixes
        created_texts = self._created_texts() if self.counter and created else None
        created_name = repeat(self.name + "_created")
        cut = slice(len(self.sample_name), None)
        for start in range(0, len(members), _BATCH):
            end = start + _BATCH
            batch = members[start:end]
            texts = _go_texts(self._values(batch))
            if self.counter and openmetrics:
                exemplars = [child._value._exemplar for child in batch]
                if exemplars.count(None) != len(exemplars):
                    for index, exemplar in enumerate(exemplars):
                        if exemplar is not None:
                            texts[index] += _exemplar(exemplar)
            heads = prefixes[start:end]
            if created_texts is None:
                out.extend(chain.from_iterable(zip(heads, texts, _NEWLINES, strict=False)))
                continue
            labels = map(operator.getitem, heads, repeat(cut))  # "{labels} "
            created_batch = created_texts[start:end]
            lines = zip(
                heads,
                texts,
                _NEWLINES,
                created_name,
                labels,
                created_batch,
                _NEWLINES,
                strict=False,
            )
            out.extend(chain.from_iterable(lines))


class _HistogramPlan(FamilyPlan):
    """A Histogram: each child's lines, built afresh every render.

    A block of bucket lines is large and changes with every observation, so
    caching it would cost more memory than it saves time: a histogram child
    is a few microseconds against prometheus_client's hundred or more.
    """

    def __init__(self, metric: Any) -> None:
        super().__init__(metric)
        bounds: list[float] = metric._upper_bounds
        self.bounds = [float_to_go(bound) for bound in bounds]
        self.has_sum = bounds[0] >= 0  # as prometheus_client decides

    def _forget(self) -> None:
        pass

    def _extend(self, children: list[Any]) -> None:
        pass

    def _render(self, openmetrics: bool, created: bool, out: list[str]) -> None:
        for child in self.members:
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
            kind = _HistogramPlan if collector._type == "histogram" else _ValuePlan
            plan = kind(collector)
        _plans[collector] = plan
        return plan
