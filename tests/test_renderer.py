import gc
import math
import os
import subprocess
import sys
import textwrap
import threading
import weakref
from collections.abc import Iterable, Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, Histogram, Info, Summary
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text
from prometheus_client.utils import floatToGoString

from bigbrotr.core.exposition import fast_path_active, render


def text_without_created(registry: CollectorRegistry, escaping: str = "underscores") -> str:
    """prometheus_client's text output with its `_created` gauge families cut out."""
    kept, skipping = [], False
    for line in generate_latest(registry, escaping).decode().splitlines(keepends=True):
        if line.startswith("# HELP "):
            skipping = line.split()[2].endswith("_created")
        if not skipping:
            kept.append(line)
    return "".join(kept)


def families(parsed: Iterable[Metric]) -> list[tuple[Any, ...]]:
    """Comparable form of parsed families (NaN compared as a string)."""
    return [
        (
            f.name,
            f.type,
            f.documentation,
            [(s.name, s.labels, repr(s.value), s.exemplar) for s in f.samples],
        )
        for f in parsed
    ]


def assert_parity(registry: CollectorRegistry) -> None:
    """Ours equals prometheus_client's output in both formats, text and parsed."""
    ours_text = render(registry).decode()
    assert ours_text == text_without_created(registry)
    assert families(parse_text(ours_text)) == families(parse_text(text_without_created(registry)))
    ours_om = render(registry, openmetrics=True).decode()
    theirs_om = openmetrics.generate_latest(registry).decode()
    assert ours_om == theirs_om
    try:  # prometheus_client's parser refuses some of its own output (NaN or negative
        expected = families(parse_openmetrics(theirs_om))  # counters, quoted exemplars)
    except ValueError:
        return  # the exact-text comparison above still holds
    assert families(parse_openmetrics(ours_om)) == expected


def test_fast_path_is_active_with_this_prometheus_client() -> None:
    """The self-check passes, so the parity tests below exercise the fast path."""
    assert fast_path_active(), (
        f"prometheus_client {version('prometheus-client')}: self-check failed"
    )


@given(st.floats() | st.integers(min_value=-(10**20), max_value=10**20).map(float))
def test_float_format_matches_prometheus_client(value: float) -> None:
    """A gauge's value is written exactly as floatToGoString writes it, for every float."""
    registry = CollectorRegistry()
    Gauge("g", "G", registry=registry).set(value)
    assert render(registry).decode().splitlines()[-1] == f"g {floatToGoString(value)}"


label_values = st.text(
    alphabet=st.sampled_from(['"', "\\", "\n", "a", "b", "é", "😀", " ", "=", ",", "{", "}"])
    | st.characters(codec="utf-8"),
    max_size=12,
)
numbers = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [0.0, -0.0, 1.0, 1e6, 1234567.0, 1e16, 1.5e300, -3.25, 1e-9]
)
label_names = st.sampled_from(["a", "b", "code", "le_x", "zz", "_u"])


@st.composite
def registries(draw: st.DrawFn) -> CollectorRegistry:
    """A registry of counters, gauges, histograms and infos with awkward names and values."""
    registry = CollectorRegistry()
    for index in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(["counter", "gauge", "histogram", "info"]))
        name = f"m{index}_{kind}"
        doc = draw(label_values)
        labels = draw(st.lists(label_names, max_size=3, unique=True))
        if kind == "histogram":
            bounds = draw(st.lists(st.floats(-1e9, 1e9), min_size=1, max_size=4, unique=True))
            metric: Any = Histogram(name, doc, labels, registry=registry, buckets=sorted(bounds))
        elif kind == "info":
            metric = Info(name, doc, labels, registry=registry)
        else:
            metric = (Counter if kind == "counter" else Gauge)(name, doc, labels, registry=registry)
        for _ in range(draw(st.integers(0 if labels else 1, 4))):
            values = draw(st.tuples(*[label_values] * len(labels)))
            child = metric.labels(*values) if labels else metric
            value = draw(numbers)
            if kind == "counter":
                child.inc(abs(value) if not math.isnan(value) else value)
            elif kind == "gauge":
                child.set(value)
            elif kind == "histogram":
                child.observe(value)
            else:
                child.info({"version": draw(label_values), "zz_extra": draw(label_values)})
    return registry


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(registries())
def test_parity_with_prometheus_client(registry: CollectorRegistry) -> None:
    """Generated registries render exactly as prometheus_client renders them."""
    assert_parity(registry)
    assert_parity(registry)  # and again, from the cache


def test_cache_follows_changes() -> None:
    """Changed values, -0.0 after 0.0, resets, removals and set_function all show up."""
    registry = CollectorRegistry()
    gauge = Gauge("g", "G", ["k"], registry=registry)
    counter = Counter("c", "C", ["k"], registry=registry)
    histogram = Histogram("h", "H", ["k"], registry=registry, buckets=(1, 2))
    gauge.labels("a").set(0.0)
    gauge.labels("b").set(5)
    counter.labels("a").inc(3)
    histogram.labels("a").observe(1.5)
    assert_parity(registry)
    gauge.labels("a").set(-0.0)
    counter.labels("a").reset()
    histogram.labels("a").observe(0.5)
    gauge.remove("b")
    gauge.labels("c").set_function(lambda: 42.0)
    assert_parity(registry)
    assert 'g{k="a"} -0.0\n' in render(registry).decode()
    assert 'g{k="b"}' not in render(registry).decode()
    assert 'g{k="c"} 42.0\n' in render(registry).decode()


def test_exemplars_units_and_other_types_match() -> None:
    """Exemplars and units (OpenMetrics), Summary, Enum and custom collectors are rendered right."""
    registry = CollectorRegistry()
    counter = Counter("requests", "R", ["path"], registry=registry)
    counter.labels("/a").inc(2, exemplar={"trace_id": 'x"1'})
    counter.labels("/b").inc()
    histogram = Histogram("size_bytes", "S", unit="bytes", registry=registry)
    histogram.observe(0.3, exemplar={"trace_id": "abc"})
    histogram.observe(7)
    Summary("latency", "L", registry=registry).observe(3)
    Enum("state", "S", states=["up", "down"], registry=registry).state("down")

    class Custom:
        def collect(self) -> list[Metric]:
            return [GaugeMetricFamily("custom_value", "From a custom collector", value=7)]

    registry.register(Custom())
    Gauge("after_custom", "Order is kept", registry=registry).set(1)
    assert_parity(registry)
    assert "# UNIT size_bytes bytes" in render(registry, openmetrics=True).decode()


def test_created_series_only_in_openmetrics() -> None:
    """Text omits _created; OpenMetrics keeps it."""
    registry = CollectorRegistry()
    Counter("jobs", "J", registry=registry).inc()
    assert "jobs_created" not in render(registry).decode()
    assert "jobs_created" in render(registry, openmetrics=True).decode()


def test_target_info_and_name_filter() -> None:
    """target_info comes first; name[] keeps whole families that answer to a name."""
    registry = CollectorRegistry(target_info={"env": "prod"})
    Gauge("temp", "T", registry=registry).set(1)
    Counter("jobs", "J", registry=registry).inc()
    Histogram("lat", "L", registry=registry).observe(1)
    assert render(registry).decode().startswith("# HELP target_info")
    only = render(registry, names=frozenset({"jobs_total", "lat"})).decode()
    assert [line.split()[2] for line in only.splitlines() if line.startswith("# TYPE")] == [
        "jobs_total",
        "lat",
    ]
    assert "lat_bucket" in only and "temp" not in only and "target_info" not in only
    assert "target_info" in render(registry, names=frozenset({"target_info"})).decode()
    assert render(registry, names="jobs") == render(registry, names=["jobs"])  # not j, o, b, s


@pytest.mark.parametrize("escaping", ["allow-utf-8", "underscores", "dots", "values"])
def test_escaping_schemes_match_prometheus_client(escaping: str) -> None:
    """Every escaping= scheme gives prometheus_client's names, UTF-8 names included."""
    registry = CollectorRegistry()
    Gauge("plain_name", "P", ["some_label"], registry=registry).labels("v").set(1)
    Gauge("dotted.name", "D", ["label.with.dots"], registry=registry).labels("v").set(2)
    assert render(registry, escaping=escaping).decode() == text_without_created(registry, escaping)
    assert (
        render(registry, openmetrics=True, escaping=escaping).decode()
        == openmetrics.generate_latest(registry, escaping=escaping).decode()
    )


def test_unknown_escaping_is_a_clear_error() -> None:
    """An escaping scheme prometheus_client does not know is refused, naming the valid ones."""
    with pytest.raises(ValueError, match="escaping must be one of allow-utf-8, dots, underscores"):
        render(CollectorRegistry(), escaping="underscore")


def test_failing_collector_raises() -> None:
    """A collector's exception reaches the caller."""

    class Broken:
        def collect(self) -> list[Metric]:
            raise RuntimeError("database gone")

    registry = CollectorRegistry()
    registry.register(Broken())
    with pytest.raises(RuntimeError, match="database gone"):
        render(registry)


def test_concurrent_renders_stay_correct() -> None:
    """Renders from several threads, while values change, each parse cleanly."""
    registry = CollectorRegistry()
    gauge = Gauge("g", "G", ["k"], registry=registry)
    children = [gauge.labels(str(i)) for i in range(200)]
    errors: list[BaseException] = []

    def scrape() -> None:
        try:
            for _ in range(20):
                parsed = families(parse_text(render(registry).decode()))
                assert len(parsed[0][3]) == 200
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=scrape) for _ in range(4)]
    for thread in threads:
        thread.start()
    for step in range(200):
        for child in children:
            child.set(step)
    for thread in threads:
        thread.join()
    assert errors == []
    assert_parity(registry)


def assert_same_bytes(registry: CollectorRegistry) -> None:
    """Ours equals prometheus_client's bytes in both formats (for output no parser accepts)."""
    assert render(registry) == text_without_created(registry).encode()
    assert render(registry, openmetrics=True) == openmetrics.generate_latest(registry)


def test_colons_in_names_match_prometheus_client() -> None:
    """Recording-rule names (job:rate5m) come out as prometheus_client writes them, : and all."""
    registry = CollectorRegistry()
    Counter("job:requests", "C", ["code"], registry=registry).labels("200").inc(3)
    Gauge("job:rate5m", "G", registry=registry).set(0.5)
    Histogram("job:latency_seconds", "H", registry=registry, buckets=(1,)).observe(0.2)
    Gauge("plain", "P", registry=registry).set(1)
    assert_parity(registry)
    assert_parity(registry)


def test_registry_subclass_collect_is_what_gets_rendered() -> None:
    """A registry that overrides collect() (filtering and adding) renders what collect() yields."""

    class Filtered(CollectorRegistry):
        def collect(self) -> Iterator[Metric]:
            for family in super().collect():
                if not family.name.startswith("hidden"):
                    yield family
            yield GaugeMetricFamily("added_value", "Added by collect()", value=5)

    registry = Filtered()
    Gauge("hidden_gauge", "H", registry=registry).set(1)
    Counter("shown", "S", ["k"], registry=registry).labels("a").inc()
    body = render(registry).decode()
    assert "hidden_gauge" not in body and "added_value 5.0" in body
    assert_parity(registry)


def test_names_ending_in_a_newline_match_prometheus_client() -> None:
    """A metric or label name ending in a newline is written exactly as prometheus_client does."""
    registry = CollectorRegistry()
    Gauge("trailing\n", "T", registry=registry).set(1)
    Counter("labelled", "L", ["key\n"], registry=registry).labels("v").inc()
    Histogram("hist", "H", ["le_x\n"], registry=registry, buckets=(1,)).labels("v").observe(2)
    assert_same_bytes(registry)
    assert_same_bytes(registry)


def run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter with ``env`` added to the environment."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_import_and_render_create_nothing_in_multiprocess_mode(tmp_path: Path) -> None:
    """With PROMETHEUS_MULTIPROC_DIR set, importing and rendering writes no file and no series."""
    result = run_python(
        """
        import bigbrotr, bigbrotr.core.exposition as exposition
        from prometheus_client import CollectorRegistry
        from prometheus_client.multiprocess import MultiProcessCollector
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        print(exposition.render(registry, openmetrics=True).decode(), end="")
        print(exposition.fast_path_active())
        """,
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("\n# EOF\nFalse\n")  # after one INFO line saying why
    assert list(tmp_path.iterdir()) == []


def test_import_and_self_check_leave_the_default_registry_alone() -> None:
    """Importing bigbrotr's exposition and running its self-check registers no metric."""
    result = run_python(
        """
        from prometheus_client import REGISTRY
        before = [family.name for family in REGISTRY.collect()]
        import bigbrotr, bigbrotr.core.exposition as exposition
        assert exposition.fast_path_active()
        exposition.render()
        assert [family.name for family in REGISTRY.collect()] == before, "registry changed"
        print("ok")
        """
    )
    assert result.stdout == "ok\n", result.stderr


def test_self_check_failure_falls_back_with_one_warning() -> None:
    """Changed internals: one WARNING names the version; the generic path renders it all."""
    result = run_python(
        """
        from prometheus_client import CollectorRegistry, Counter, Gauge, values
        from prometheus_client.exposition import generate_latest
        from prometheus_client.openmetrics.exposition import generate_latest as openmetrics

        class Renamed(values.MutexValue):
            # a future prometheus_client that keeps the value under another name
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                self._stored = self.__dict__.pop("_value")
            def inc(self, amount):
                with self._lock:
                    self._stored += amount
            def set(self, value, timestamp=None):
                with self._lock:
                    self._stored = value
            def get(self):
                with self._lock:
                    return self._stored

        values.MutexValue = values.ValueClass = Renamed
        from bigbrotr.core.exposition import fast_path_active, render
        registry = CollectorRegistry()
        Gauge("temperature", "T", ["room"], registry=registry).labels("hall").set(21.5)
        Counter("jobs", "J", registry=registry).inc()
        print(render(registry, openmetrics=True) == openmetrics(registry), fast_path_active())
        gauges = CollectorRegistry()
        Gauge("temperature", "T", ["room"], registry=gauges).labels("hall").set(21.5)
        print(render(gauges) == generate_latest(gauges), b"21.5" in render(gauges))
        """
    )
    assert result.returncode == 0, result.stderr
    *logged, first, second = result.stdout.splitlines()
    assert (first, second) == ("True False", "True True")
    assert len(logged) == 1
    assert "WARNING" in logged[0].upper() and "fast path off" in logged[0]
    assert f"prometheus_client_version={version('prometheus-client')}" in logged[0]


def test_collectors_that_cannot_be_weakly_referenced_render() -> None:
    """A custom collector with __slots__ (no weak references) renders as prometheus_client's."""

    class Slotted:
        __slots__ = ()

        def collect(self) -> list[Metric]:
            return [GaugeMetricFamily("slotted", "S", value=1)]

    registry = CollectorRegistry()
    registry.register(Slotted())
    Gauge("after", "A", registry=registry).set(2)
    assert_parity(registry)


def test_a_labelled_child_registered_alone_renders() -> None:
    """A child of a labelled metric registered by itself renders as prometheus_client's."""
    counter = Counter("c", "C", ["k"], registry=None)
    registry = CollectorRegistry()
    registry.register(counter.labels("a"))
    counter.labels("a").inc(3)
    assert_parity(registry)


def test_rendered_metrics_can_be_garbage_collected() -> None:
    """Rendering keeps no strong reference to a metric, labelled or not."""
    registry = CollectorRegistry()
    labelled = Counter("labelled", "L", ["k"], registry=registry)
    labelled.labels("a").inc()
    metrics = [
        Gauge("plain", "P", registry=registry),
        labelled,
        Histogram("h", "H", registry=registry),
    ]
    render(registry)
    render(registry, openmetrics=True)
    refs = [weakref.ref(metric) for metric in metrics]
    del registry, metrics, labelled
    gc.collect()
    assert [ref() for ref in refs] == [None, None, None]


def test_set_function_callbacks_run_outside_render_locks() -> None:
    """A gauge callback that waits for a lock held by another rendering thread cannot deadlock."""
    app_lock = threading.RLock()
    holding, in_callback = threading.Event(), threading.Event()

    def callback() -> float:
        if threading.current_thread().name == "scraper":
            in_callback.set()
        with app_lock:  # held by "worker" until its own render finishes
            return 1.0

    registry = CollectorRegistry()
    Gauge("g", "G", ["k"], registry=registry).labels("a").set_function(callback)

    def worker() -> None:
        with app_lock:
            holding.set()
            in_callback.wait(10)
            render(registry)

    threads = [
        threading.Thread(target=worker, name="worker", daemon=True),
        threading.Thread(target=lambda: holding.wait(10) and render(registry), name="scraper",
                         daemon=True),
    ]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert [thread.is_alive() for thread in threads] == [False, False]


def test_unencodable_text_from_any_collector_is_escaped_not_raised() -> None:
    """A lone surrogate in a collector's HELP, name or label is escaped, in both formats."""
    from prometheus_client.core import GaugeMetricFamily

    class Undecodable:
        def collect(self) -> Iterator[GaugeMetricFamily]:
            family = GaugeMetricFamily("odd", "from caf\udce9.csv", labels=["file"])
            family.add_metric(["caf\udce9"], 1)
            yield family

    registry = CollectorRegistry()
    registry.register(Undecodable())
    for om in (False, True):
        body = render(registry, openmetrics=om).decode()
        # the escape is text, so its backslash is escaped as any label's: a parser
        # reads the value caf\udce9, as from the fast path's single backslash
        assert 'odd{file="caf\\\\udce9"} 1.0' in body
        assert "# HELP odd from caf\\\\udce9.csv" in body
