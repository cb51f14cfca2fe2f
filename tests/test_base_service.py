import asyncio
import io
import json
import time
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from pydantic import ValidationError

from bigbrotr import __version__
from bigbrotr.core.base_service import BaseService, BaseServiceConfig
from bigbrotr.core.metrics import MetricsConfig
from bigbrotr.core.status import HISTORY
from bigbrotr.core.yaml import ConfigFileError
from tests.support.services import MetricsOn, Scripted, ScriptedService, UniqueName


def counter(service: type[BaseService[BaseServiceConfig]], name: str) -> float | None:
    labels = {"service": service.SERVICE_NAME, "name": name}
    return REGISTRY.get_sample_value("service_counter_total", labels)


def gauge(service: type[BaseService[BaseServiceConfig]], name: str) -> float | None:
    labels = {"service": service.SERVICE_NAME, "name": name}
    return REGISTRY.get_sample_value("service_gauge", labels)


def test_service_defaults_its_config_from_config_class(scripted: Scripted) -> None:
    """Without a config, the service builds CONFIG_CLASS() and exposes it read-only."""

    class Extended(BaseServiceConfig):
        batch: int = 10

    cls = type("WithConfig", (scripted(),), {"CONFIG_CLASS": Extended})
    service = cls()
    assert isinstance(service.config, Extended)
    assert service.config.batch == 10
    with pytest.raises(AttributeError):
        service.config = Extended()
    with pytest.raises(ValidationError):
        service.config.interval = 1


def test_service_without_name_is_rejected() -> None:
    """A subclass that forgets SERVICE_NAME fails at construction, saying so."""

    class Nameless(BaseService[BaseServiceConfig]):
        async def run(self) -> None: ...
        async def cleanup(self) -> int:
            return 0

    with pytest.raises(TypeError, match="SERVICE_NAME"):
        Nameless()


def test_base_service_is_abstract() -> None:
    """run() must be implemented."""
    bare = type("Bare", (BaseService,), {"SERVICE_NAME": "bare"})
    with pytest.raises(TypeError, match="abstract"):
        bare()


async def test_cleanup_is_optional_and_cleans_nothing(unique_name: UniqueName) -> None:
    """A service that writes only run() runs its cycles; the default cleanup() returns 0."""
    runs: list[int] = []

    class OnlyRun(BaseService[BaseServiceConfig]):
        SERVICE_NAME = unique_name()

        async def run(self) -> None:
            runs.append(1)

    service = OnlyRun()
    assert await service.cleanup() == 0
    assert await service.run_cycle() is True
    assert runs == [1]


def test_from_dict_and_from_yaml_pass_extra_dependencies(
    scripted: Scripted, tmp_path: Path
) -> None:
    """from_dict and from_yaml validate the config and forward keyword arguments."""
    cls = scripted()
    service = cls.from_dict({"interval": 7}, script=[1.0])
    assert service.config.interval == 7
    assert service.script == [1.0]
    path = tmp_path / "svc.yaml"
    path.write_text("interval: 9\nmetrics:\n  enabled: true\n")
    service = cls.from_yaml(path, script=[2.0])
    assert service.config.interval == 9
    assert service.config.metrics.enabled
    assert service.script == [2.0]


def test_from_yaml_error_names_file_and_field(scripted: Scripted, tmp_path: Path) -> None:
    """An invalid value in YAML is a ConfigFileError naming the file and dotted field."""
    path = tmp_path / "bad.yaml"
    path.write_text("metrics:\n  port: 80\n")
    with pytest.raises(ConfigFileError, match=r"bad\.yaml: field 'metrics\.port'.*got 80"):
        scripted().from_yaml(path)
    path.write_text("intervall: 5\n")
    with pytest.raises(ConfigFileError, match="unknown field 'intervall'"):
        scripted().from_yaml(path)


async def test_is_running_follows_async_with_and_shutdown(scripted: Scripted) -> None:
    """is_running is False before start, True inside async with, False after shutdown."""
    service = scripted()()
    assert not service.is_running
    async with service:
        assert service.is_running
        service.request_shutdown()
        assert not service.is_running
    async with scripted()() as other:
        assert other.is_running
    assert not other.is_running


class BaseServiceSleeper(BaseService[BaseServiceConfig]):
    """A real-time service whose cycles sleep until shutdown; ``waiting`` is set once it waits."""

    SERVICE_NAME = "sleeper"

    def __init__(self, config: BaseServiceConfig | None = None) -> None:
        super().__init__(config)
        self.waiting = asyncio.Event()

    async def run(self) -> None:
        await self.wait(3600)

    async def cleanup(self) -> int:
        return 0

    async def wait(self, timeout: float) -> bool:  # noqa: ASYNC109
        self.waiting.set()
        return await super().wait(timeout)


async def test_wait_times_out_false_and_wakes_true_on_shutdown() -> None:
    """wait() returns False on timeout and True, at once, when shutdown is requested."""
    service = BaseServiceSleeper()
    assert await service.wait(0.01) is False
    service.waiting.clear()
    waiter = asyncio.create_task(service.wait(3600))
    await asyncio.wait_for(service.waiting.wait(), 5)  # the hour-long wait has begun
    service.request_shutdown()
    assert await asyncio.wait_for(waiter, timeout=5) is True


async def test_status_keeps_counts_the_last_error_and_recent_cycles(scripted: Scripted) -> None:
    """status() holds what the page shows, with metrics off too; history is bounded."""
    script: list[float | BaseException] = [0.5, ValueError("bad <input>"), 2.0] * 30
    service = scripted()(BaseServiceConfig(max_consecutive_failures=0), script=script)
    before = service.fake_clock.time()  # the service's wall clock
    await service.run_forever()
    status = service.status()
    assert (status.cycles_succeeded, status.cycles_failed) == (60, 30)
    assert status.last_error is not None
    assert (status.last_error.type, status.last_error.message) == ("ValueError", "bad <input>")
    assert before <= status.last_error.at <= service.fake_clock.time()
    assert len(status.recent) == HISTORY
    assert [(c.duration, c.ok, c.error) for c in status.recent[-3:]] == [
        (0.5, True, ""),
        (0.0, False, "ValueError"),
        (2.0, True, ""),
    ]
    assert status.loop_lag is None  # the watchdog stopped with the loop
    assert status.health.consecutive_failures == 0


async def test_successful_cycle_metrics(scripted: Scripted, metrics_on: MetricsOn) -> None:
    """A success counts, stamps last_cycle_timestamp and observes its duration."""
    cls = scripted()
    service = cls(metrics_on(), script=[4.5])
    before = service.fake_clock.time()  # the service's wall clock
    await service.run_forever()
    assert counter(cls, "cycles_success") == 1
    stamp = gauge(cls, "last_cycle_timestamp")
    assert stamp is not None
    assert before <= stamp <= service.fake_clock.time()
    labels = {"service": cls.SERVICE_NAME}
    assert REGISTRY.get_sample_value("cycle_duration_seconds_count", labels) == 1
    assert REGISTRY.get_sample_value("cycle_duration_seconds_sum", labels) == 4.5
    bucket = {**labels, "le": "5.0"}
    assert REGISTRY.get_sample_value("cycle_duration_seconds_bucket", bucket) == 1


async def test_cycles_longer_than_the_interval_are_counted(
    scripted: Scripted, metrics_on: MetricsOn
) -> None:
    """cycles_over_interval counts the cycles that ran past the interval."""
    cls = scripted()
    script: list[float | BaseException] = [0.5, 2.0, 0.9, 1.5]
    await cls(metrics_on(interval=1.0), script=script).run_forever()
    assert counter(cls, "cycles_over_interval") == 2
    assert counter(cls, "cycles_success") == 4


async def test_failed_cycles_are_not_observed_in_the_histogram(
    scripted: Scripted, metrics_on: MetricsOn
) -> None:
    """Only successful cycles feed cycle_duration_seconds."""
    cls = scripted()
    await cls(metrics_on(), script=[RuntimeError("x")]).run_forever()
    labels = {"service": cls.SERVICE_NAME}
    assert REGISTRY.get_sample_value("cycle_duration_seconds_count", labels) in (None, 0)


async def test_baseline_metrics_exported_at_zero_on_start(
    scripted: Scripted, metrics_on: MetricsOn
) -> None:
    """Counts and streak exist at 0 before any cycle, beside the limit and the start time."""
    cls = scripted()
    assert counter(cls, "cycles_success") is None
    before = time.time()
    async with cls(metrics_on(max_consecutive_failures=7)):
        assert counter(cls, "cycles_success") == 0
        assert counter(cls, "cycles_failed") == 0
        assert gauge(cls, "consecutive_failures") == 0
        assert gauge(cls, "max_consecutive_failures") == 7
        assert before <= (gauge(cls, "start_timestamp") or 0) <= time.time()


async def test_service_info_set_at_start(scripted: Scripted, metrics_on: MetricsOn) -> None:
    """service_info carries the service's name and version, and bigbrotr's, once started."""
    cls: type[ScriptedService] = type("Versioned", (scripted(),), {"SERVICE_VERSION": "2.4.1"})
    async with cls(metrics_on()):
        labels = {"service": cls.SERVICE_NAME, "version": "2.4.1", "bigbrotr_version": __version__}
        assert REGISTRY.get_sample_value("service_info", labels) == 1
    async with scripted()(metrics_on()) as unversioned:
        labels = {"service": unversioned.SERVICE_NAME, "version": "unknown"}
        assert REGISTRY.get_sample_value("service_info", labels | {"bigbrotr_version": __version__})


async def test_cycle_durations_below_a_second_land_in_their_own_buckets(
    scripted: Scripted, metrics_on: MetricsOn
) -> None:
    """A 20 ms cycle is counted at le=0.025, not only at le=1.0 (buckets start at 5 ms)."""
    cls = scripted()
    await cls(metrics_on(), script=[0.02]).run_forever()

    def bucket(le: str) -> float | None:
        labels = {"service": cls.SERVICE_NAME, "le": le}
        return REGISTRY.get_sample_value("cycle_duration_seconds_bucket", labels)

    assert (bucket("0.01"), bucket("0.025"), bucket("3600.0")) == (0, 1, 1)


def test_the_logger_is_public_and_bound_to_the_service(
    scripted: Scripted, log_stream: io.StringIO
) -> None:
    """``self.log`` is a structlog logger whose lines carry the service name."""
    service = scripted("logged_service")()
    service.log.info("hello", items=3)
    line = json.loads(log_stream.getvalue().splitlines()[-1])
    assert (line["event"], line["items"], line["service"]) == ("hello", 3, "logged_service")


async def test_metrics_off_records_nothing(scripted: Scripted) -> None:
    """With metrics disabled, cycles and helpers leave no series."""
    cls = scripted()
    service = cls(script=[RuntimeError("x"), 1])
    await service.run_forever()
    service.set_gauge("g", 1)
    service.inc_gauge("g")
    service.dec_gauge("g")
    service.inc_counter("c", 5)
    for name in ("cycles_success", "cycles_failed", "errors_RuntimeError", "c"):
        assert counter(cls, name) is None
    assert gauge(cls, "g") is None
    assert gauge(cls, "consecutive_failures") is None


def test_metric_helpers_update_labelled_series(scripted: Scripted, metrics_on: MetricsOn) -> None:
    """set/inc/dec_gauge and inc_counter write service_gauge / service_counter_total."""
    cls = scripted()
    service = cls(metrics_on())
    service.set_gauge("depth", 10)
    service.inc_gauge("depth", 5)
    service.dec_gauge("depth")
    service.inc_counter("items")
    service.inc_counter("items", 2.5)
    assert gauge(cls, "depth") == 14
    assert counter(cls, "items") == 3.5
    with pytest.raises(ValueError, match="negative"):
        service.inc_counter("items", -1)


async def test_run_cycle_runs_one_cycle(scripted: Scripted) -> None:
    """run_cycle() runs cleanup then run once and reports success."""
    service: ScriptedService = scripted()(script=[1, 1])
    assert await service.run_cycle() is True
    assert service.calls == ["cleanup", "run"]
    failing: ScriptedService = scripted()(script=[OSError("disk")])
    assert await failing.run_cycle() is False


def test_names_past_max_names_fold_into_overflow(
    scripted: Scripted, log_stream: io.StringIO
) -> None:
    """Past metrics.max_names, new names fold into __overflow__, counted, with one WARNING."""
    cls = scripted()
    service = cls(BaseServiceConfig(metrics=MetricsConfig(enabled=True, max_names=10)))
    for i in range(25):
        service.inc_counter(f"item_{i}", 2)
    service.inc_counter("item_3")  # a name kept before the limit still counts as itself
    service.set_gauge("depth_0", 1)
    labels = {"service": cls.SERVICE_NAME}
    get = REGISTRY.get_sample_value
    assert counter(cls, "item_9") == 2 and counter(cls, "item_3") == 3
    assert counter(cls, "item_10") is None
    assert counter(cls, "__overflow__") == 30  # 15 folded updates of 2: nothing is lost
    assert get("service_name_overflow_updates_total", {**labels, "family": "service_counter"}) == 15
    assert gauge(cls, "depth_0") == 1
    warnings = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    warnings = [line for line in warnings if "__overflow__" in line["event"]]
    assert len(warnings) == 1
    assert (warnings[0]["family"], warnings[0]["first_folded"]) == ("service_counter", "item_10")


async def test_new_exception_types_fold_too(scripted: Scripted) -> None:
    """errors_<ExceptionType> names are guarded by max_names like any other name."""
    errors = [type(f"Error{i}", (Exception,), {})() for i in range(12)]
    cls = scripted()
    metrics = MetricsConfig(enabled=True, max_names=10)
    config = BaseServiceConfig(max_consecutive_failures=0, metrics=metrics)
    await cls(config, [*errors, 0]).run_forever()
    assert counter(cls, "cycles_failed") == 12
    assert counter(cls, "errors_Error0") == 1
    named = sum(counter(cls, f"errors_Error{i}") or 0 for i in range(12))
    assert named + (counter(cls, "__overflow__") or 0) == 12
    assert counter(cls, "__overflow__")


async def test_automatic_names_are_never_folded(scripted: Scripted) -> None:
    """Past max_names, the runtime's own names (last_cycle_timestamp ...) still appear."""
    cls = scripted()
    service = cls(BaseServiceConfig(metrics=MetricsConfig(enabled=True, max_names=10)), [0])
    for i in range(20):
        service.set_gauge(f"user_{i}", i)
    await service.run_forever()
    assert gauge(cls, "last_cycle_timestamp")
    assert counter(cls, "cycles_success") == 1
    assert gauge(cls, "user_19") is None and gauge(cls, "__overflow__") == 19
