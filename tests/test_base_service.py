import asyncio
import io
import itertools
import json
import linecache
import time
from collections.abc import Callable
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


def test_config_defaults() -> None:
    """Interval 300 s, five failures, metrics off."""
    config = BaseServiceConfig()
    assert config.interval == 300.0
    assert config.max_consecutive_failures == 5
    assert config.metrics.enabled is False


@pytest.mark.parametrize(
    "fields",
    [
        {"interval": 0},
        {"interval": -1},
        {"interval": 604_801},
        {"max_consecutive_failures": -1},
        {"max_consecutive_failures": 101},
        {"intervall": 5},
        {"metrics": {"port": 80}},
    ],
)
def test_config_rejects_bad_values(fields: dict[str, object]) -> None:
    """Out-of-range values and unknown keys are rejected."""
    with pytest.raises(ValidationError):
        BaseServiceConfig(**fields)  # type: ignore[arg-type]


def test_config_accepts_bounds() -> None:
    """One week, 0 (unlimited) and 100 failures are allowed."""
    config = BaseServiceConfig(interval=604_800, max_consecutive_failures=0)
    assert config.interval == 604_800
    assert config.max_consecutive_failures == 0
    assert BaseServiceConfig(max_consecutive_failures=100).max_consecutive_failures == 100


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
    """run() and cleanup() must be implemented."""
    bare = type("Bare", (BaseService,), {"SERVICE_NAME": "bare"})
    with pytest.raises(TypeError, match="abstract"):
        bare()


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


async def test_wait_times_out_false_and_wakes_true_on_shutdown() -> None:
    """wait() returns False on timeout and True, at once, when shutdown is requested."""
    service = BaseServiceSleeper()
    assert await service.wait(0.01) is False
    waiter = asyncio.create_task(service.wait(3600))
    await asyncio.sleep(0)
    service.request_shutdown()
    assert await asyncio.wait_for(waiter, timeout=5) is True


class BaseServiceSleeper(BaseService[BaseServiceConfig]):
    """A real-time service whose cycles sleep until shutdown."""

    SERVICE_NAME = "sleeper"

    async def run(self) -> None:
        await self.wait(3600)

    async def cleanup(self) -> int:
        return 0


async def test_run_forever_interval_wait_is_interrupted_by_shutdown() -> None:
    """A service waiting out a long interval stops as soon as shutdown is requested."""
    service = BaseServiceSleeper(BaseServiceConfig(interval=3600))
    loop = asyncio.create_task(service.run_forever())
    await asyncio.sleep(0.05)
    assert service.is_running
    service.request_shutdown()
    assert await asyncio.wait_for(loop, timeout=5) is False


async def test_each_cycle_runs_cleanup_then_run(scripted: Scripted) -> None:
    """Every cycle calls cleanup() then run()."""
    service = scripted()(script=[1, 1, 1])
    assert await service.run_forever() is False
    assert service.calls == ["cleanup", "run"] * 3


async def test_schedule_is_start_to_start_without_drift(scripted: Scripted) -> None:
    """With a 10 s interval and 3 s cycles, cycles start exactly 10 s apart."""
    service = scripted()(BaseServiceConfig(interval=10), script=[3, 3, 3, 3])
    await service.run_forever()
    starts = service.cycle_starts
    assert [b - a for a, b in itertools.pairwise(starts)] == [10, 10, 10]
    assert service.waits[:3] == [7, 7, 7]


async def test_long_cycle_starts_the_next_at_once(scripted: Scripted) -> None:
    """A cycle longer than the interval is followed by the next without waiting."""
    service = scripted()(BaseServiceConfig(interval=10), script=[25, 3, 3])
    await service.run_forever()
    assert service.waits[:2] == [0, 7]
    assert service.cycle_starts == [1000, 1025, 1035]


@pytest.mark.parametrize("exc", [asyncio.CancelledError(), KeyboardInterrupt(), SystemExit(3)])
async def test_control_flow_exceptions_propagate_uncounted(
    scripted: Scripted, metrics_on: MetricsOn, exc: BaseException
) -> None:
    """CancelledError, KeyboardInterrupt and SystemExit leave run_forever uncounted."""
    cls = scripted()
    service = cls(metrics_on(), script=[exc, 1])
    with pytest.raises(type(exc)):
        await service.run_forever()
    assert counter(cls, "cycles_failed") == 0
    assert counter(cls, "cycles_success") == 0


async def test_failures_are_counted_and_the_loop_goes_on(
    scripted: Scripted, metrics_on: MetricsOn
) -> None:
    """A failing cycle is counted by type and the next cycle still runs."""
    cls = scripted()
    service = cls(metrics_on(), script=[ValueError("x"), KeyError("y"), 2])
    assert await service.run_forever() is False
    assert counter(cls, "cycles_failed") == 2
    assert counter(cls, "cycles_success") == 1
    assert counter(cls, "errors_ValueError") == 1
    assert counter(cls, "errors_KeyError") == 1
    assert gauge(cls, "consecutive_failures") == 0


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


async def test_failure_limit_stops_the_loop_and_reports_it(
    scripted: Scripted, metrics_on: MetricsOn
) -> None:
    """max_consecutive_failures failures in a row stop the loop, which returns True."""
    cls = scripted()
    script: list[float | BaseException] = [RuntimeError("boom")] * 10
    service = cls(metrics_on(max_consecutive_failures=3), script=script)
    assert await service.run_forever() is True
    assert service.calls.count("run") == 3
    assert counter(cls, "cycles_failed") == 3
    assert gauge(cls, "consecutive_failures") == 3
    assert not service.is_running


async def test_a_success_resets_the_failure_streak(
    scripted: Scripted, metrics_on: MetricsOn
) -> None:
    """Failures separated by a success never reach the limit."""
    boom = RuntimeError("boom")
    cls = scripted()
    service = cls(metrics_on(max_consecutive_failures=2), script=[boom, 1, boom, 1, boom])
    assert await service.run_forever() is False
    assert counter(cls, "cycles_failed") == 3


async def test_zero_failure_limit_means_unlimited(scripted: Scripted) -> None:
    """With max_consecutive_failures=0 the loop survives any number of failures."""
    script: list[float | BaseException] = [RuntimeError("boom")] * 20
    service = scripted()(BaseServiceConfig(max_consecutive_failures=0), script=script)
    assert await service.run_forever() is False
    assert service.calls.count("run") == 20


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


async def test_failed_cycle_logged_once_at_error_with_traceback(
    scripted: Scripted, log_stream: io.StringIO
) -> None:
    """A failed cycle writes one ERROR line with type, message and traceback."""
    stream = log_stream
    service = scripted()(script=[ZeroDivisionError("division by zero"), 1])
    await service.run_forever()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    errors = [line for line in lines if line["level"] == "error"]
    assert len(errors) == 1
    assert errors[0]["error"] == "ZeroDivisionError: division by zero"
    assert "Traceback (most recent call last)" in errors[0]["exception"]
    assert errors[0]["service"] == service.SERVICE_NAME


async def test_run_cycle_runs_one_cycle(scripted: Scripted) -> None:
    """run_cycle() runs cleanup then run once and reports success."""
    service: ScriptedService = scripted()(script=[1, 1])
    assert await service.run_cycle() is True
    assert service.calls == ["cleanup", "run"]
    failing: ScriptedService = scripted()(script=[OSError("disk")])
    assert await failing.run_cycle() is False


class HangingService(BaseService[BaseServiceConfig]):
    """A service whose run() waits until released, recording the in-progress gauge it saw."""

    SERVICE_NAME = "hanging"

    def __init__(self, config: BaseServiceConfig) -> None:
        super().__init__(config)
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.seen_in_progress: float | None = None

    async def cleanup(self) -> int:
        return 0

    async def run(self) -> None:
        self.seen_in_progress = gauge(type(self), "cycle_in_progress_start_timestamp")
        self.entered.set()
        await self.release.wait()


Hanging = Callable[..., HangingService]


@pytest.fixture
def hanging(unique_name: UniqueName, metrics_on: MetricsOn) -> Hanging:
    """Make a HangingService with a unique name, metrics on and ``fields`` in its config."""

    def make(**fields: object) -> HangingService:
        cls = type("Hanging", (HangingService,), {"SERVICE_NAME": unique_name("hang")})
        service: HangingService = cls(metrics_on(**fields))
        return service

    return make


async def test_cycle_timeout_cancels_and_counts_the_cycle(
    hanging: Hanging, log_stream: io.StringIO
) -> None:
    """A cycle longer than cycle_timeout is cancelled and counted failed as TimeoutError."""
    service = hanging(cycle_timeout=0.05)
    assert await service.run_cycle() is False
    cls = type(service)
    assert counter(cls, "errors_TimeoutError") == 1
    assert counter(cls, "cycles_failed") == 1
    assert gauge(cls, "consecutive_failures") == 1
    failed = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    assert "cycle took longer than cycle_timeout=0.05s" in failed[-1]["error"]


async def test_the_cycle_in_progress_is_exported_with_its_start(hanging: Hanging) -> None:
    """While a cycle runs its start time is exported; between cycles the gauge is 0."""
    service = hanging()
    before = time.time()
    cycle = asyncio.create_task(service.run_cycle())
    await service.entered.wait()
    service.release.set()
    assert await cycle is True
    assert service.seen_in_progress is not None
    assert before <= service.seen_in_progress <= time.time()
    assert gauge(type(service), "cycle_in_progress_start_timestamp") == 0
    assert gauge(type(service), "interval_seconds") == service.config.interval


async def test_shutdown_grace_cancels_a_hung_cycle_uncounted(
    hanging: Hanging, log_stream: io.StringIO
) -> None:
    """After a shutdown request a hung cycle gets shutdown_grace, then is cancelled, not failed."""
    service = hanging(shutdown_grace=0.05)
    loop = asyncio.create_task(service.run_forever())
    await service.entered.wait()
    service.request_shutdown()
    assert await asyncio.wait_for(loop, 5) is False
    assert counter(type(service), "cycles_failed") == 0
    assert "cycle cancelled: still running after shutdown_grace" in log_stream.getvalue()


async def test_a_cycle_that_ends_within_the_grace_completes(hanging: Hanging) -> None:
    """A cycle that finishes within shutdown_grace after the request is a normal success."""
    service = hanging(shutdown_grace=30)
    loop = asyncio.create_task(service.run_forever())
    await service.entered.wait()
    service.request_shutdown()
    service.release.set()
    assert await asyncio.wait_for(loop, 5) is False
    assert counter(type(service), "cycles_success") == 1


async def test_repeated_failures_log_the_traceback_once(
    scripted: Scripted, log_stream: io.StringIO
) -> None:
    """The same failure's traceback is logged once; its repeats are one line with a count."""
    script: list[float | BaseException] = [ValueError("same"), ValueError("same"), ValueError("x")]
    service = scripted()(BaseServiceConfig(max_consecutive_failures=0), [*script, KeyError("k"), 0])
    await service.run_forever()
    failed = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    failed = [line for line in failed if line["event"] == "cycle failed"]
    assert [line["error"] for line in failed] == [
        "ValueError: same",
        "ValueError: same",
        "ValueError: x",
        "KeyError: 'k'",
    ]
    assert ["exception" in line for line in failed] == [True, False, False, True]
    assert [line.get("repeat") for line in failed] == [None, 2, 3, None]
    file, line = failed[0]["at"].rsplit(":", 1)
    assert linecache.getline(file, int(line)).strip() == "raise step"  # where it was raised


async def test_a_huge_error_message_is_shortened(
    scripted: Scripted, log_stream: io.StringIO
) -> None:
    """An exception carrying a whole payload is logged shortened, saying how much was cut."""
    service = scripted()(BaseServiceConfig(), [RuntimeError("x" * 5000)])
    await service.run_forever()
    failed = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    error = next(line["error"] for line in failed if line["event"] == "cycle failed")
    assert error.endswith("... (4014 more characters)")
    assert len(error) < 1100


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
