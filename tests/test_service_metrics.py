import asyncio
import os
import subprocess
from typing import Any

import pytest
from prometheus_client import REGISTRY

from bigbrotr.core import service_metrics as m
from bigbrotr.core.base_service import BaseService, BaseServiceConfig
from bigbrotr.core.exposition import render
from tests.support.services import MetricsOn, UniqueName


class Quiet(BaseService[BaseServiceConfig]):
    """A service whose cycles do nothing; the tests declare metrics on subclasses."""

    SERVICE_NAME = "quiet"

    async def cleanup(self) -> int:
        return 0

    async def run(self) -> None:
        pass


def value(sample: str, service: BaseService[Any], **labels: str) -> float | None:
    return REGISTRY.get_sample_value(sample, {"service": service.SERVICE_NAME, **labels})


# One family per name in the default registry: the tests below share these declarations.
PAGES = m.Counter("decl_pages_fetched", "Pages fetched, by HTTP status.", labels=["status"])
QUEUE = m.Gauge("decl_queue_length", "Items waiting.")
FETCH = m.Histogram("decl_fetch_duration", "Time to fetch a page.", unit="seconds",
                    buckets=[0.1, 1.0])  # fmt: skip
SIZE = m.Summary("decl_page_size", "Size of a page.", unit="bytes")
BUILD = m.Info("decl_build", "Build of the fetcher.")
PHASE = m.Enum("decl_phase", "What the fetcher does.", states=["idle", "fetching"])


def test_every_kind_is_declared_with_its_name_help_unit_and_service_label(
    metrics_on: MetricsOn, unique_name: UniqueName
) -> None:
    """Counter, gauge, histogram, summary, info and enum: series carry ``service``."""

    class Fetcher(Quiet):
        SERVICE_NAME = unique_name("fetcher")
        pages, queue, fetch, size, build, phase = PAGES, QUEUE, FETCH, SIZE, BUILD, PHASE

    service = Fetcher(metrics_on())
    service.pages.labels("200").inc(3)
    service.pages.labels(status="404").inc()
    service.queue.set(7)
    service.fetch.observe(0.5)
    service.size.observe(2048)
    service.build.info({"commit": "abc123"})
    service.phase.state("fetching")
    assert value("decl_pages_fetched_total", service, status="200") == 3
    assert value("decl_pages_fetched_total", service, status="404") == 1
    assert value("decl_queue_length", service) == 7
    assert value("decl_fetch_duration_seconds_bucket", service, le="1.0") == 1
    assert value("decl_fetch_duration_seconds_bucket", service, le="0.1") == 0
    assert value("decl_page_size_bytes_sum", service) == 2048
    assert value("decl_build_info", service, commit="abc123") == 1
    assert value("decl_phase", service, decl_phase="fetching") == 1
    text = render(REGISTRY, names=["decl_fetch_duration_seconds", "decl_pages_fetched"]).decode()
    assert "# HELP decl_fetch_duration_seconds Time to fetch a page." in text
    assert "# HELP decl_pages_fetched_total Pages fetched, by HTTP status." in text


def test_declared_metrics_pass_promtool_check_metrics(
    metrics_on: MetricsOn, unique_name: UniqueName
) -> None:
    """What a service declares follows Prometheus naming: promtool has nothing to say."""

    class Fetcher(Quiet):
        SERVICE_NAME = unique_name("fetcher")
        pages = PAGES

    service = Fetcher(metrics_on())
    service.pages.labels("200").inc()
    names = ["decl_pages_fetched", "decl_queue_length", "decl_fetch_duration_seconds"]
    text = render(REGISTRY, names=[*names, "decl_page_size_bytes"])
    check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True)
    assert check.returncode == 0, check.stderr.decode()


def test_two_services_share_a_family_each_with_its_own_series(
    metrics_on: MetricsOn, unique_name: UniqueName
) -> None:
    """The same declaration on two services: one family, a series per service."""

    class First(Quiet):
        SERVICE_NAME = unique_name("first")
        queue = QUEUE

    class Second(Quiet):
        SERVICE_NAME = unique_name("second")
        queue = QUEUE

    first, second = First(metrics_on()), Second(metrics_on())
    first.queue.set(1)
    second.queue.set(2)
    assert (value("decl_queue_length", first), value("decl_queue_length", second)) == (1, 2)


def test_the_same_name_declared_differently_is_refused(metrics_on: MetricsOn) -> None:
    """Two different declarations of one name would collide: the second service says so."""

    class Other(Quiet):
        queue = m.Gauge("decl_queue_length", "Something else entirely.")

    with pytest.raises(ValueError, match="'decl_queue_length' is declared twice, differently"):
        Other(metrics_on())


def test_a_name_the_registry_already_has_is_refused(metrics_on: MetricsOn) -> None:
    """Declaring one of bigbrotr's own names (or any taken one) is an error naming it."""

    class Clash(Quiet):
        clash = m.Gauge("service_gauge", "Mine.")

    with pytest.raises(ValueError, match="metric 'service_gauge'"):
        Clash(metrics_on())


def test_with_metrics_off_declared_metrics_record_nothing_and_accept_every_call() -> None:
    """Metrics off: nothing registered, and every call (labels, time as both forms) is fine."""

    class Off(Quiet):
        silent = m.Histogram("decl_silent_seconds", "Never registered.", labels=["step"])
        queue = QUEUE

    service = Off(BaseServiceConfig())
    service.silent.labels("a").observe(1)
    with service.silent.labels("a").time():
        pass

    @service.silent.labels("b").time()  # type: ignore[untyped-decorator]
    def work() -> int:
        return 5

    assert work() == 5
    service.queue.set(9)
    assert value("decl_queue_length", service) is None
    assert "decl_silent_seconds" not in render(REGISTRY).decode()


def test_the_seed_helpers_still_work_beside_declared_metrics(
    metrics_on: MetricsOn, unique_name: UniqueName
) -> None:
    """set_gauge and inc_counter go on feeding service_gauge / service_counter_total."""

    class Both(Quiet):
        SERVICE_NAME = unique_name("both")
        queue = QUEUE

    service = Both(metrics_on())
    service.queue.set(1)
    service.set_gauge("depth", 4)
    service.inc_counter("items", 2)
    assert (
        REGISTRY.get_sample_value(
            "service_gauge", {"service": service.SERVICE_NAME, "name": "depth"}
        )
        == 4
    )
    assert value("service_counter_total", service, name="items") == 2


def test_labels_must_be_given_whole_by_position_or_by_name(
    metrics_on: MetricsOn, unique_name: UniqueName
) -> None:
    """A child needs every label; mixing positions and names is refused."""

    class Fetcher(Quiet):
        SERVICE_NAME = unique_name("fetcher")
        pages = PAGES

    service = Fetcher(metrics_on())
    with pytest.raises(ValueError, match="by position or by name"):
        service.pages.labels("200", status="200")
    with pytest.raises(ValueError, match=r"expected the labels \['status'\], got \[\]"):
        service.pages.labels()


def test_a_subclass_inherits_declarations_and_may_replace_them(
    metrics_on: MetricsOn, unique_name: UniqueName
) -> None:
    """Declarations on a base class are bound on subclasses; a plain attribute overrides."""

    class Base(Quiet):
        queue = QUEUE

    class Child(Base):
        SERVICE_NAME = unique_name("child")

    class Plain(Base):
        SERVICE_NAME = unique_name("plain")
        queue = None

    service = Child(metrics_on())
    service.queue.set(3)
    assert value("decl_queue_length", service) == 3
    assert Plain(metrics_on()).queue is None


@pytest.mark.parametrize(
    ("declare", "message"),
    [
        (lambda: m.Counter("9lives", "x"), "metric name '9lives'"),
        (lambda: m.Counter("bad-name", "x"), "metric name 'bad-name'"),
        (lambda: m.Counter("ok", "  "), "HELP text"),
        (lambda: m.Gauge("ok", "x", labels=["service"]), "'service' is reserved"),
        (lambda: m.Histogram("ok", "x", labels=["le"]), "'le' is reserved"),
        (lambda: m.Summary("ok", "x", labels=["quantile"]), "'quantile' is reserved"),
        (lambda: m.Gauge("ok", "x", labels=["__x"]), "not a valid label name"),
        (lambda: m.Gauge("ok", "x", labels=["a", "a"]), "listed twice"),
        (lambda: m.Histogram("ok", "x", unit="milliseconds"), "base units: seconds"),
        (lambda: m.Gauge("ok", "x", unit="percent"), "base units: ratio"),
        (lambda: m.Gauge("ok", "x", unit="Bytes!"), "not a valid unit"),
    ],
)
def test_names_labels_and_units_follow_prometheus_naming(declare: Any, message: str) -> None:
    """A declaration breaking Prometheus' naming rules fails at once, saying which rule."""
    with pytest.raises(ValueError, match=message):
        declare()


def test_label_values_that_compare_equal_keep_their_own_series(
    metrics_on: MetricsOn, unique_name: UniqueName
) -> None:
    """1, True and "1" are different label values: each gets its own child."""

    class Flags(Quiet):
        SERVICE_NAME = unique_name("flags")
        seen = m.Counter("decl_flags_seen", "Flags seen, by value.", labels=["flag"])

    service = Flags(metrics_on())
    service.seen.labels(True).inc()
    service.seen.labels(1).inc(2)
    service.seen.labels(flag="1").inc(4)
    assert value("decl_flags_seen_total", service, flag="True") == 1
    assert value("decl_flags_seen_total", service, flag="1") == 6
    service.seen.remove(1)
    service.seen.labels(1).inc()  # a new child, exported again
    assert value("decl_flags_seen_total", service, flag="1") == 1


def test_a_metric_cannot_take_the_name_of_a_runtime_attribute(metrics_on: MetricsOn) -> None:
    """Naming a metric ``status`` or ``log`` would break /status or logging: refused."""

    class Shadowing(Quiet):
        status = m.Gauge("decl_status", "Shadows BaseService.status.")

    with pytest.raises(TypeError, match=r"Shadowing\.status: a metric cannot take the name"):
        Shadowing(metrics_on())


def test_the_declaration_on_the_class_says_to_use_the_instance() -> None:
    """``Class.metric.labels()`` is a mistake with a message that says what to do."""

    class Declaring(Quiet):
        pages = PAGES

    with pytest.raises(AttributeError, match=r"self\.pages\.labels\(\.\.\.\)"):
        Declaring.pages.labels("200")


def test_indexing_is_the_hot_path_and_label_sets_are_bounded(unique_name: UniqueName) -> None:
    """``metric["200"]`` is ``labels("200")``; past max_names label sets fold and count."""

    class Pages(Quiet):
        SERVICE_NAME = unique_name("pages")
        hits = m.Counter("decl_page_hits", "Hits, by path.", labels=["path"])
        pairs = m.Gauge("decl_pairs", "Pairs.", labels=["a", "b"])

    service = Pages(BaseServiceConfig(metrics={"enabled": True, "max_names": 10}))  # type: ignore[arg-type]
    assert service.hits["/a"] is service.hits.labels("/a") is service.hits.labels(path="/a")
    service.pairs["x", "y"].set(3)
    assert value("decl_pairs", service, a="x", b="y") == 3
    for number in range(12):
        service.hits[f"/page/{number}"].inc()  # a label made from data: a bug
    assert value("decl_page_hits_total", service, path="/page/8") == 1
    assert value("decl_page_hits_total", service, path="/page/9") is None  # the 11th set
    assert value("decl_page_hits_total", service, path="__overflow__") == 3
    folded = value("service_name_overflow_updates_total", service, family="decl_page_hits")
    assert folded == 3
    service.remove_metrics()
    assert value("decl_page_hits_total", service, path="__overflow__") is None
    assert value("decl_pairs", service, a="x", b="y") is None


def test_a_typo_fails_with_metrics_off_too() -> None:
    """The no-op stand-in offers prometheus_client's methods only, so typos show at once."""

    class Off(Quiet):
        queue = QUEUE

    service = Off(BaseServiceConfig())
    service.queue.set(1)
    with pytest.raises(AttributeError):
        service.queue.sett(1)


class Verbose(BaseService[BaseServiceConfig]):
    """Makes up huge names: helpers, timed operations and a declared label."""

    SERVICE_NAME = "verbose"
    files = m.Counter("verbose_files", "Files, by name.", labels=["file"])

    async def run(self) -> None:
        for number in range(100):
            huge = f"{number}-" + "x" * 1_000_000
            self.inc_counter(huge)
            self.set_gauge(huge, 1)
            self.files[huge].inc()
            with self.timed(huge):
                pass


async def test_names_too_long_fold_so_a_scrape_stays_small(bigbrotr: Any) -> None:
    """100 names of 1 MB each: folded into __overflow__, counted, and the scrape stays small."""
    harness = bigbrotr(Verbose)
    assert await harness.run_cycles(1) == [True]
    async with harness.serve():
        scraped = await harness.scrape()
    assert len(scraped.text) < 200_000
    mine = {"service": "verbose"}  # the registry is shared: other tests fold names too
    assert scraped.value("service_counter_total", name="__overflow__", **mine) == 100
    assert scraped.value("verbose_files_total", file="__overflow__", **mine) == 100
    for family in ("service_counter", "service_gauge", "verbose_files",
                   "service_operation_duration_seconds"):  # fmt: skip
        labels = {"family": family, **mine}
        assert scraped.value("service_name_overflow_updates_total", **labels) == 100, family


class Undecodable(BaseService[BaseServiceConfig]):
    """Counts a file whose name is not UTF-8 (os.fsdecode gives a lone surrogate)."""

    SERVICE_NAME = "undecodable"

    async def run(self) -> None:
        self.inc_counter(os.fsdecode(b"file_\xff"))


async def test_a_lone_surrogate_in_a_name_is_escaped_not_a_failed_scrape(bigbrotr: Any) -> None:
    """Both formats answer 200 with the name escaped (promtool accepts it); the rest intact."""
    harness = bigbrotr(Undecodable)
    assert await harness.run_cycles(1) == [True]
    async with harness.serve():
        for openmetrics in (False, True):
            scraped = await harness.scrape(openmetrics=openmetrics)
            assert scraped.status == 200, scraped.text
            assert 'name="file_\\\\udcff"' in scraped.text  # an escaped backslash, then u
            labels = {"name": "file_\\udcff", "service": "undecodable"}
            assert scraped.value("service_counter_total", **labels) == 1
            if not openmetrics:  # Go's own parser takes it
                command = ["promtool", "check", "metrics"]
                checked = await asyncio.to_thread(
                    subprocess.run, command, input=scraped.text, capture_output=True, text=True
                )
                assert "escape" not in checked.stdout + checked.stderr, checked.stderr
            assert (
                scraped.value("service_counter_total", name="cycles_success", service="undecodable")
                == 1
            )
