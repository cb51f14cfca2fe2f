"""The renderer: a registry to exposition text, exactly as prometheus_client writes it.

prometheus_client's own ``Counter``, ``Gauge`` and ``Histogram`` families take
the fast path (``fast_path.py``); everything else (custom collectors, ``Info``,
``Summary``, ``Enum``, UTF-8 names, ``dots`` and ``values`` escaping) goes
through prometheus_client's generators, so output stays correct. Families come
out in registry order either way. The text format omits ``_created`` series;
OpenMetrics keeps them.
"""

from __future__ import annotations

import copy
from typing import Any

from prometheus_client.exposition import generate_latest as generate_text
from prometheus_client.metrics_core import InfoMetricFamily, Metric
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.registry import Collector, CollectorRegistry

from bigbrotr.core.fast_path import FAST_PATH, plan_for

__all__ = ["family_names", "render"]

_TYPE_SUFFIXES = {
    "counter": ("_total", "_created"),
    "summary": ("_sum", "_count", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "info": ("_info",),
}
_CHUNK_LINES = 4096
#: Schemes that leave legacy names as they are; ``dots`` and ``values`` go generic.
_FAST_ESCAPINGS = frozenset((openmetrics.UNDERSCORES, openmetrics.ALLOWUTF8))


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


def _render_generic(families: list[Metric], om: bool, escaping: str) -> bytes:
    if om:
        body: bytes = openmetrics.generate_latest(  # type: ignore[no-untyped-call]
            _Families(families), escaping=escaping
        )
        return body[: -len(b"# EOF\n")]
    trimmed = [_without_created(family) for family in families]
    return generate_text(_Families(trimmed), escaping=escaping)


def _collectors(registry: Collector) -> tuple[list[Any], list[Metric]]:
    """The registry's collectors in registration order, and its target_info family."""
    if not isinstance(registry, CollectorRegistry) or not FAST_PATH:
        return [registry], []
    with registry._lock:
        collectors = list(registry._collector_to_names)
    target = registry.get_target_info()
    if not target:
        return collectors, []
    return collectors, [InfoMetricFamily("target", "Target metadata", value=target)]


def render(
    registry: Collector,
    openmetrics_format: bool = False,
    escaping: str = openmetrics.UNDERSCORES,
    names: frozenset[str] | None = None,
) -> bytes:
    """Render ``registry`` in the text format (0.0.4 / 1.0.0) or OpenMetrics 1.0.0.

    Args:
        registry: A ``CollectorRegistry`` (fast path) or any collector.
        openmetrics_format: OpenMetrics (with ``_created`` and ``# EOF``) instead
            of the Prometheus text format (without ``_created``).
        escaping: Name escaping scheme, as prometheus_client understands it.
        names: If given, only families answering to one of these names (see
            ``family_names``), each whole; prometheus_client's ``name[]`` keeps
            only the named samples instead.

    Returns:
        The UTF-8 body.

    Raises:
        Exception: Whatever a collector raises; the caller reports it.
    """
    om = openmetrics_format
    fast_ok = escaping in _FAST_ESCAPINGS  # others rewrite valid names too
    collectors, leading = _collectors(registry)

    def wanted(name: str, kind: str) -> bool:
        return names is None or not names.isdisjoint(family_names(name, kind))

    chunks: list[bytes] = []
    generic: list[Metric] = [family for family in leading if wanted(family.name, family.type)]
    lines: list[str] = []

    def flush_lines() -> None:
        if lines:
            chunks.append("".join(lines).encode())
            lines.clear()

    def flush_generic() -> None:
        if generic:
            chunks.append(_render_generic(generic, om, escaping))
            generic.clear()

    for collector in collectors:
        plan = plan_for(collector) if fast_ok else None
        if plan is None:
            for family in collector.collect():
                if wanted(family.name, family.type):
                    flush_lines()
                    generic.append(family)
            continue
        if not wanted(plan.name, plan.kind):
            continue
        flush_generic()
        lines.append(plan.header(om))
        plan.render(collector, om, lines)
        if len(lines) > _CHUNK_LINES:
            flush_lines()
    flush_lines()
    flush_generic()
    if om:
        chunks.append(b"# EOF\n")
    return b"".join(chunks)
