import asyncio
import contextlib
import io
import itertools
import json
import linecache
import time
from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from prometheus_client import REGISTRY

from bigbrotr.core.base_service import BaseService, BaseServiceConfig
from bigbrotr.testing import FakeClock
from tests.support.services import MetricsOn, Scripted, ScriptedService, UniqueName


def counter(service: type[BaseService[BaseServiceConfig]], name: str) -> float | None:
    labels = {"service": service.SERVICE_NAME, "name": name}
    return REGISTRY.get_sample_value("service_counter_total", labels)


def gauge(service: type[BaseService[BaseServiceConfig]], name: str) -> float | None:
    labels = {"service": service.SERVICE_NAME, "name": name}
    return REGISTRY.get_sample_value("service_gauge", labels)


class Idle(BaseService[BaseServiceConfig]):
    """A real-time service whose cycles do nothing; ``waiting`` is set once it waits."""

    SERVICE_NAME = "idle"

    def __init__(self, config: BaseServiceConfig) -> None:
        super().__init__(config)
        self.waiting = asyncio.Event()

    async def cleanup(self) -> int:
        return 0

    async def run(self) -> None:
        pass

    async def wait(self, timeout: float) -> bool:  # noqa: ASYNC109
        self.waiting.set()
        return await super().wait(timeout)


async def test_run_forever_interval_wait_is_interrupted_by_shutdown() -> None:
    """A service waiting out a long interval stops as soon as shutdown is requested."""
    service = Idle(BaseServiceConfig(interval=3600))
    loop = asyncio.create_task(service.run_forever())
    await asyncio.wait_for(service.waiting.wait(), 5)  # the cycle is done: the interval begins
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


async def test_a_cycle_timeout_due_before_the_grace_ends_still_fails_the_cycle(
    hanging: Hanging, log_stream: io.StringIO
) -> None:
    """A shutdown request never extends a cycle: a timeout due sooner is a counted failure."""
    service = hanging(cycle_timeout=0.05, shutdown_grace=30)
    loop = asyncio.create_task(service.run_forever())
    await service.entered.wait()
    service.request_shutdown()
    assert await asyncio.wait_for(loop, 5) is False
    assert counter(type(service), "errors_TimeoutError") == 1
    assert "cycle cancelled" not in log_stream.getvalue()


async def test_a_cycle_started_after_shutdown_gets_only_the_grace(
    hanging: Hanging, log_stream: io.StringIO
) -> None:
    """run_cycle() after a shutdown request is cancelled after shutdown_grace, uncounted."""
    service = hanging(shutdown_grace=0.05)
    service.request_shutdown()
    assert await asyncio.wait_for(service.run_cycle(), 5) is False
    assert counter(type(service), "cycles_failed") == 0
    assert "cycle cancelled: still running after shutdown_grace" in log_stream.getvalue()


async def test_a_timeout_raised_by_run_itself_is_an_ordinary_failure(
    scripted: Scripted, metrics_on: MetricsOn, log_stream: io.StringIO
) -> None:
    """A TimeoutError from the service's own code keeps its message: cycle_timeout did not fire."""
    cls = scripted()
    await cls(metrics_on(cycle_timeout=60), script=[TimeoutError("upstream slow")]).run_forever()
    assert counter(cls, "errors_TimeoutError") == 1
    failed = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    failed = [line for line in failed if line["event"] == "cycle failed"]
    assert [line["error"] for line in failed] == ["TimeoutError: upstream slow"]


async def test_a_successful_cycle_logs_its_duration_and_what_cleanup_cleaned(
    scripted: Scripted, log_stream: io.StringIO
) -> None:
    """One DEBUG line per successful cycle, with its duration and cleanup()'s count."""

    async def cleanup(self: ScriptedService) -> int:
        await ScriptedService.cleanup(self)
        return 3

    cls: type[ScriptedService] = type("Cleaning", (scripted(),), {"cleanup": cleanup})
    await cls(script=[2.5]).run_forever()
    lines = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    done = [line for line in lines if line["event"] == "cycle done"]
    assert [(line["level"], line["duration_seconds"], line["cleaned"]) for line in done] == [
        ("debug", 2.5, 3)
    ]


async def test_a_cycle_cancelled_from_outside_is_no_longer_in_progress(
    scripted: Scripted,
) -> None:
    """A run_cycle() cancelled by its caller leaves no cycle "in progress" behind."""

    class Hangs(scripted()):  # type: ignore[misc]
        async def run(self) -> None:
            await asyncio.Event().wait()

    service = Hangs(BaseServiceConfig())
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(service.run_cycle(), 0.05)
    assert service.health().cycle_started_at is None
    assert service.status().cycles_failed == 0


UTC = ZoneInfo("UTC")


def at(hour: int, minute: int, second: float = 0) -> float:
    """Unix time on 2026-06-01, UTC."""
    return datetime(2026, 6, 1, hour, minute, tzinfo=UTC).timestamp() + second


async def test_a_cron_service_waits_for_its_first_start_and_keeps_to_the_wall_clock(
    scripted: Scripted, metrics_on: MetricsOn
) -> None:
    """No cycle at start with cron (run_at_start false); then each planned start."""
    clock = FakeClock(wall=at(0, 3))
    service = scripted()(metrics_on(schedule="*/10 * * * *"), [61, 0, 0], clock)
    await service.run_forever()
    assert service.wall_starts == [at(0, 10), at(0, 20), at(0, 30)]
    assert max(service.waits) <= 60  # a wall-clock start is waited for in slices
    assert counter(type(service), "cycles_skipped") == 0


async def test_a_cycle_past_planned_starts_is_followed_at_once_and_skips_the_rest(
    scripted: Scripted, metrics_on: MetricsOn
) -> None:
    """Never a burst: one cycle at once, the starts passed over counted, then the schedule."""
    clock = FakeClock(wall=at(0, 3))
    service = scripted()(metrics_on(schedule="*/10 * * * *"), [25 * 60, 0, 0], clock)
    await service.run_forever()
    # 00:10 ran to 00:35, past 00:20 and 00:30: one cycle at once stands for them
    assert service.wall_starts == [at(0, 10), at(0, 35), at(0, 40)]
    assert counter(type(service), "cycles_skipped") == 1
    assert counter(type(service), "cycles_over_interval") == 1


@pytest.mark.parametrize(
    ("jump", "expected_start", "skipped"),
    [
        (3600, at(1, 4), 5),  # 00:10 to 01:00 passed while waiting: one cycle now, 5 skipped
        (-3600, at(0, 10), 0),  # the clock went back an hour: 00:10 is waited for again
    ],
    ids=["forward", "back"],
)
async def test_a_wall_clock_jump_moves_the_cron_start_with_it(
    scripted: Scripted, metrics_on: MetricsOn, jump: float, expected_start: float, skipped: int
) -> None:
    """A cron start follows the wall clock, read again at least once a minute."""
    clock = FakeClock(wall=at(0, 3))

    class Jumping(scripted()):  # type: ignore[misc]
        async def wait(self, timeout: float) -> bool:  # noqa: ASYNC109
            if not self.waits:
                clock.jump(jump)
            stopping: bool = await super().wait(timeout)
            return stopping

    service = Jumping(metrics_on(schedule="*/10 * * * *"), [0], clock)
    await service.run_forever()
    assert service.wall_starts == [expected_start]
    assert counter(Jumping, "cycles_skipped") == skipped


async def test_jitter_delays_each_planned_start_without_drift(
    scripted: Scripted, metrics_on: MetricsOn
) -> None:
    """Each start is its planned one plus [0, jitter), announced by the gauge; no drift."""
    announced = []

    class Recording(scripted()):  # type: ignore[misc]
        async def run(self) -> None:  # the gauge still says when this cycle was due
            announced.append(gauge(type(self), "next_cycle_timestamp"))
            await super().run()

    service = Recording(metrics_on(interval=60, jitter=30), [1.0] * 20)
    await service.run_forever()
    first = service.cycle_starts[0]
    delays = [start - (first + 60 * n) for n, start in enumerate(service.cycle_starts)]
    assert delays[0] == 0 and all(0 <= delay < 30 for delay in delays)
    assert len({round(delay, 6) for delay in delays}) > 5  # random, not one fixed delay
    assert max(delays) > 15  # spread over the window, and no accumulation past it
    assert announced == [pytest.approx(wall) for wall in service.wall_starts]


async def test_run_at_start_false_waits_one_interval_first(
    scripted: Scripted, metrics_on: MetricsOn
) -> None:
    """An interval service told not to run at start begins one interval in."""
    service = scripted()(metrics_on(interval=30, run_at_start=False), [0, 0])
    await service.run_forever()
    assert service.cycle_starts == [1030, 1060]


async def test_next_cycle_timestamp_is_known_from_the_start(
    scripted: Scripted, metrics_on: MetricsOn
) -> None:
    """Before the first cycle the gauge holds its planned start; cycles_skipped starts at 0."""
    clock = FakeClock(wall=at(2, 0))
    service = scripted()(metrics_on(schedule="0 3 * * *"), [0], clock)
    assert service.next_start() == at(3, 0)
    assert gauge(type(service), "next_cycle_timestamp") == at(3, 0)
    await service.run_forever()
    assert service.wall_starts == [at(3, 0)]
    assert gauge(type(service), "next_cycle_timestamp") == at(3, 0) + 86400
