"""The renderer: a registry to exposition text, exactly as prometheus_client writes it.

prometheus_client's own ``Counter``, ``Gauge`` and ``Histogram`` families take
the fast path (``_fast_path.py``) once a self-check has shown, on a private
registry, that it writes the very bytes prometheus_client writes. Everything
else (custom collectors, ``Info``, ``Summary``, ``Enum``, names outside
``[a-zA-Z_][a-zA-Z0-9_]*``, ``dots`` and ``values`` escaping, registries that
override ``collect``, multiprocess mode) goes through prometheus_client's
generators. Families come out in registry order either way. The text format
omits ``_created`` series; OpenMetrics keeps them.
"""

from __future__ import annotations

import codecs
import copy
import math
import threading
from collections.abc import Iterable
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import prometheus_client
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import generate_latest as generate_text
from prometheus_client.metrics_core import InfoMetricFamily, Metric
from prometheus_client.openmetrics import exposition as om_exposition
from prometheus_client.registry import Collector

from bigbrotr.core.exposition import _fast_path
from bigbrotr.core.logger import get_logger

__all__ = ["family_names", "fast_path_active", "render"]

_TYPE_SUFFIXES = {
    "counter": ("_total", "_created"),
    "summary": ("_sum", "_count", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "info": ("_info",),
}
_CHUNK_LINES = 4096
#: Schemes that leave legacy names as they are; ``dots`` and ``values`` go generic.
_FAST_ESCAPINGS = frozenset((om_exposition.UNDERSCORES, om_exposition.ALLOWUTF8))
_ESCAPINGS = _FAST_ESCAPINGS | {om_exposition.DOTS, om_exposition.VALUES}
_log = get_logger(__name__)


def family_names(name: str, kind: str) -> frozenset[str]:
    """The names a family answers to in ``name[]``: its own, and its sample names."""
    return frozenset((name, *(name + suffix for suffix in _TYPE_SUFFIXES.get(kind, ()))))


class _Families:
    """A fixed list of families, shaped like a registry for prometheus_client's generators."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> list[Metric]:
        return self._families


def _without_created(family: Metric) -> Metric:
    created = family.name + "_created"
    if not any(sample.name == created for sample in family.samples):
        return family
    trimmed = copy.copy(family)
    trimmed.samples = [sample for sample in family.samples if sample.name != created]
    return trimmed


def _escaped_surrogates(error: UnicodeError) -> tuple[str, int]:
    """Each unencodable character as the generic path writes it: an escaped backslash-u.

    The generic path turns the character into the text backslash-u-hex
    (``_sendable``), then escapes that backslash as any label value's; lines
    already escaped need both at once, so the two paths write the same bytes
    and Go's parser (promtool) accepts them.
    """
    assert isinstance(error, UnicodeEncodeError)
    bad = error.object[error.start : error.end]
    return "".join(f"\\\\u{ord(char):04x}" for char in bad), error.end


_ESCAPED_SURROGATES = "bigbrotr-escaped-surrogates"
codecs.register_error(_ESCAPED_SURROGATES, _escaped_surrogates)


def _sendable(text: str) -> str:
    """``text`` that encodes as UTF-8: a lone surrogate becomes a backslash escape."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _escaped(family: Metric) -> Metric:
    """A copy of ``family`` whose names, HELP, labels and exemplars all encode as UTF-8."""
    copy = Metric(_sendable(family.name), _sendable(family.documentation), family.type)
    copy.unit = _sendable(family.unit)

    def labels(values: dict[str, str]) -> dict[str, str]:
        return {_sendable(key): _sendable(value) for key, value in values.items()}

    copy.samples = [
        sample._replace(
            name=_sendable(sample.name),
            labels=labels(sample.labels),
            exemplar=sample.exemplar
            and sample.exemplar._replace(labels=labels(sample.exemplar.labels)),
        )
        for sample in family.samples
    ]
    return copy


def _render_generic(families: list[Metric], openmetrics: bool, escaping: str) -> bytes:
    """prometheus_client's bytes; a text it cannot encode (a lone surrogate) is escaped.

    prometheus_client fails the whole scrape on such a text; here only the
    unencodable characters change, and only on the render that meets one.
    """
    try:
        return _render_generic_as_is(families, openmetrics, escaping)
    except UnicodeEncodeError:
        return _render_generic_as_is([_escaped(f) for f in families], openmetrics, escaping)


def _render_generic_as_is(families: list[Metric], openmetrics: bool, escaping: str) -> bytes:
    if openmetrics:
        body: bytes = om_exposition.generate_latest(  # type: ignore[no-untyped-call]
            _Families(families), escaping=escaping
        )
        return body[: -len(b"# EOF\n")]
    trimmed = [_without_created(family) for family in families]
    return generate_text(_Families(trimmed), escaping=escaping)


def render(
    registry: Collector = REGISTRY,
    *,
    openmetrics: bool = False,
    escaping: str = om_exposition.UNDERSCORES,
    names: Iterable[str] | None = None,
) -> bytes:
    """Render ``registry`` as prometheus_client would, only faster.

    Blocking and CPU-bound; call it off the event loop for large registries.
    Safe to call from several threads at once.

    Args:
        registry: A ``CollectorRegistry``, or any collector.
        openmetrics: OpenMetrics 1.0.0 (with ``_created`` series and ``# EOF``)
            instead of the Prometheus text format (without ``_created``).
        escaping: Name escaping scheme: ``underscores``, ``allow-utf-8``,
            ``dots`` or ``values``.
        names: If given, only the families answering to one of these names
            (their own or a sample name such as ``jobs_total``), each whole.

    Returns:
        The UTF-8 body.

    Raises:
        ValueError: For an escaping scheme prometheus_client does not know.
        Exception: Whatever a collector raises; the caller reports it.
    """
    if escaping not in _ESCAPINGS:
        raise ValueError(
            f"escaping must be one of {', '.join(sorted(_ESCAPINGS))}, not {escaping!r}"
        )
    if isinstance(names, str):  # one name, not its characters
        names = (names,)
    wanted = frozenset(names) if names is not None else None
    fast = escaping in _FAST_ESCAPINGS and fast_path_active()
    return _render(registry, openmetrics, escaping, wanted, fast)


def _render(
    registry: Collector,
    openmetrics: bool,
    escaping: str,
    names: frozenset[str] | None,
    fast: bool,
) -> bytes:
    """``render`` with the choice of path made by the caller (the self-check makes both)."""
    _fast_path.render_starts()
    found = _fast_path.collectors_of(registry) if fast else None
    collectors: list[Any] = [registry]
    generic: list[Metric] = []
    if found is not None:
        collectors, target = found
        if target:
            generic.append(InfoMetricFamily("target", "Target metadata", value=target))

    def wanted(name: str, kind: str) -> bool:
        return names is None or not names.isdisjoint(family_names(name, kind))

    generic = [family for family in generic if wanted(family.name, family.type)]
    chunks: list[bytes] = []
    lines: list[str] = []

    def flush_lines() -> None:
        if lines:
            # A lone surrogate (a name from os.fsdecode) is escaped, not a failed scrape.
            chunks.append("".join(lines).encode("utf-8", _ESCAPED_SURROGATES))
            lines.clear()
            _fast_path.let_others_run()

    def flush_generic() -> None:
        if generic:
            chunks.append(_render_generic(generic, openmetrics, escaping))
            generic.clear()

    for collector in collectors:
        plan = _fast_path.plan_for(collector) if found is not None else None
        if plan is None:
            for family in collector.collect():
                if wanted(family.name, family.type):
                    flush_lines()
                    generic.append(family)
            continue
        if not wanted(plan.name, plan.kind):
            continue
        flush_generic()
        plan.render(collector, openmetrics, lines)
        if len(lines) > _CHUNK_LINES:
            flush_lines()
    flush_lines()
    flush_generic()
    if openmetrics:
        chunks.append(b"# EOF\n")
    return b"".join(chunks)


def _self_check_registry() -> tuple[CollectorRegistry, list[Any]]:
    """A private registry with every kind and awkward value the fast path handles.

    Returns:
        The registry, and changes to apply before a second comparison (so the
        cached lines are checked too).
    """
    registry = CollectorRegistry()
    kinds = prometheus_client
    plain = kinds.Counter("check_plain", "No labels.", registry=registry)
    plain.inc(1e22)
    doc = 'Help with \\ and\nnewline "quoted"'
    labelled = kinds.Counter("check_requests", doc, ["code", "path"], registry=registry)
    labelled.labels("200", 'a "quoted" \\ back\nslash').inc(3, exemplar={"trace_id": "abc"})
    labelled.labels("500", "/x").inc()
    gauge = kinds.Gauge("check_values", "Values.", ["k"], unit="bytes", registry=registry)
    values = {"neg_zero": -0.0, "nan": math.nan, "inf": math.inf, "big": 12345678901.5}
    for key, value in values.items():
        gauge.labels(key).set(value)
    gauge.labels("callback").set_function(lambda: 42.0)
    kinds.Gauge("check:recording_rule", "A : in the name.", registry=registry).set(1)
    negative = kinds.Histogram(
        "check_temperature",
        "Negative first bucket.",
        ["room"],
        buckets=(-10, 0, 25.5),
        registry=registry,
    )
    negative.labels("cellar").observe(-12)
    latency = kinds.Histogram("check_latency_seconds", "Latency.", registry=registry)
    latency.observe(0.3, exemplar={"trace_id": "h1"})
    latency.observe(7)
    changes = [
        lambda: labelled.labels("500", "/x").inc(2),
        lambda: plain.reset(),
        lambda: labelled.remove("200", 'a "quoted" \\ back\nslash'),
        lambda: labelled.labels("201", "/new").inc(),
        lambda: gauge.labels("neg_zero").set(0.0),
        lambda: negative.labels("cellar").observe(30),
        lambda: latency.observe(0.01),
    ]
    return registry, changes


def _self_check() -> bool:
    """Whether the fast path writes prometheus_client's bytes, on a private registry.

    Touches no user registry and creates no file: it runs only when values
    live in this process (never in multiprocess mode).
    """
    if not _fast_path.supported():
        _log.info("exposition fast path off: prometheus_client multiprocess mode")
        return False
    try:
        registry, changes = _self_check_registry()
        same = True
        for step in range(2):
            for openmetrics in (False, True):
                for escaping in _FAST_ESCAPINGS:
                    fast = _render(registry, openmetrics, escaping, None, True)
                    generic = _render(registry, openmetrics, escaping, None, False)
                    same = same and fast == generic
            if step == 0:
                for change in changes:
                    change()
    except Exception as exc:  # internals changed shape: the fast path cannot be trusted
        same = False
        detail = f"{type(exc).__name__}: {exc}"
    else:
        detail = "output differs from prometheus_client's"
    if not same:
        _log.warning(
            "exposition fast path off: it does not match this prometheus_client; "
            "rendering with prometheus_client's generators (correct, slower)",
            prometheus_client_version=_client_version(),
            detail=detail,
        )
    return same


def _client_version() -> str:
    try:
        return version("prometheus-client")
    except PackageNotFoundError:  # vendored or installed without metadata
        return "unknown"


_active: bool | None = None
_active_lock = threading.Lock()


def fast_path_active() -> bool:
    """Whether ``render`` uses the fast path for prometheus_client's own metrics.

    The first call runs the self-check (a few milliseconds): a private registry
    is rendered both ways, in both formats, and the fast path is used only if
    the bytes are identical. Otherwise one WARNING names the prometheus_client
    version and every family is rendered by prometheus_client's generators.
    """
    global _active
    if _active is None:
        with _active_lock:
            if _active is None:
                _active = _self_check()
    return _active
