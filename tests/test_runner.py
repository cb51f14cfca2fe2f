"""``bigbrotr.runner``: forever and once, and the loop ``run`` owns (no subprocess here)."""

from __future__ import annotations

import socket

import pytest
from prometheus_client import REGISTRY

from bigbrotr import runner
from bigbrotr.process import EXIT_FAILED, EXIT_OK, ShutdownSignals, UsageError
from tests.support.services import MetricsOn, Scripted


def gauge(name: str, service: str) -> float | None:
    return REGISTRY.get_sample_value("service_gauge", {"service": service, "name": name})


def test_run_once_owns_its_loop_and_records_the_run(
    scripted: Scripted, metrics_on: MetricsOn
) -> None:
    """run(once=True): one cycle on a loop of its own; duration and success on its clock."""
    cls = scripted()
    service = cls(metrics_on(), script=[2.5])
    assert runner.run(service, ShutdownSignals(), once=True) == EXIT_OK
    assert service.calls == ["cleanup", "run"]
    assert gauge("run_duration_seconds", cls.SERVICE_NAME) == 2.5  # the fake clock's seconds
    ended = service.status().recent[-1].ended_at
    assert gauge("last_success_timestamp", cls.SERVICE_NAME) == ended
    service.remove_metrics()


async def test_serve_once_fails_with_the_cycle(scripted: Scripted, metrics_on: MetricsOn) -> None:
    """serve_once exits 1 when its cycle fails, and sets no last success."""
    cls = scripted()
    service = cls(metrics_on(), script=[RuntimeError("down")])
    assert await runner.serve_once(service, ShutdownSignals()) == EXIT_FAILED
    assert gauge("last_success_timestamp", cls.SERVICE_NAME) is None
    service.remove_metrics()


async def test_serve_forever_serves_until_told_and_reports_the_limit(
    scripted: Scripted, metrics_on: MetricsOn
) -> None:
    """serve_forever: 0 when shutdown ends it, 1 when the failure limit does."""
    stops = scripted()(metrics_on(), script=[0.1, 0.1])  # asks to stop after its script
    assert await runner.serve_forever(stops, ShutdownSignals()) == EXIT_OK
    assert stops.calls.count("run") == 2
    failing = scripted()(metrics_on(max_consecutive_failures=2), script=[RuntimeError("x")] * 5)
    assert await runner.serve_forever(failing, ShutdownSignals()) == EXIT_FAILED
    assert failing.calls.count("run") == 2
    for service in (stops, failing):
        service.remove_metrics()


async def test_serve_forever_on_a_taken_port_is_a_usage_error(
    scripted: Scripted, metrics_on: MetricsOn
) -> None:
    """A port in use is one line with a hint, and no cycle runs."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        service = scripted()(
            metrics_on().model_copy(
                update={"metrics": metrics_on().metrics.model_copy(update={"port": port})}
            ),
            script=[0.1],
        )
        with pytest.raises(UsageError, match=r"\(--port picks another\)"):
            await runner.serve_forever(service, ShutdownSignals())
    assert service.calls == []
