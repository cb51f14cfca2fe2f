"""Shared fixtures: free ports, a scrape helper, and service classes with unique names."""

from __future__ import annotations

import contextlib
import io
import itertools
import logging
import socket
import threading
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
import structlog
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric

from bigbrotr.core.base_service import BaseService, BaseServiceConfig
from bigbrotr.core.logger import LogFormat, configure_logging

_names = itertools.count()


def unique_name(prefix: str = "svc") -> str:
    """Return a service name no other test uses (the metric singletons are shared)."""
    return f"{prefix}_{next(_names)}"


class FakeClock:
    """Monotonic time that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class ScriptedService(BaseService[BaseServiceConfig]):
    """A service whose cycles follow a script; each step is run() for one cycle.

    A step is a number (seconds the cycle takes on the fake clock) or an
    exception instance to raise. After the script ends, shutdown is requested.
    Waits advance the fake clock instead of sleeping.
    """

    SERVICE_NAME = "scripted"

    def __init__(
        self,
        config: BaseServiceConfig | None = None,
        script: list[float | BaseException] | None = None,
    ) -> None:
        super().__init__(config)
        self.fake_clock = FakeClock()
        self.script = list(script or [])
        self.calls: list[str] = []
        self.cycle_starts: list[float] = []
        self.waits: list[float] = []

    def clock(self) -> float:  # type: ignore[override]
        return self.fake_clock()

    async def wait(self, timeout: float) -> bool:  # noqa: ASYNC109
        self.waits.append(timeout)
        if self.is_running:
            self.fake_clock.advance(timeout)
        return not self.is_running

    async def cleanup(self) -> int:
        self.calls.append("cleanup")
        self.cycle_starts.append(self.fake_clock())
        return 0

    async def run(self) -> None:
        self.calls.append("run")
        step = self.script.pop(0) if self.script else 0.0
        if not self.script:
            self.request_shutdown()
        if isinstance(step, BaseException):
            raise step
        self.fake_clock.advance(step)


def scripted(name: str | None = None) -> type[ScriptedService]:
    """A ScriptedService subclass with a unique SERVICE_NAME."""
    return type("Scripted", (ScriptedService,), {"SERVICE_NAME": name or unique_name()})


def metrics_on(**fields: object) -> BaseServiceConfig:
    """A base config with metrics enabled on a free port."""
    return BaseServiceConfig(metrics={"enabled": True, "port": 0}, **fields)  # type: ignore[arg-type]


@contextlib.contextmanager
def captured_logs(
    service: str = "logtest", level: str = "DEBUG", fmt: LogFormat = "json"
) -> Iterator[io.StringIO]:
    """Configure logging into a buffer, and restore the previous set-up afterwards."""
    stream = io.StringIO()
    root = logging.getLogger()
    handlers, old_level = root.handlers[:], root.level
    configure_logging(service, level, fmt, stream=stream)
    try:
        yield stream
    finally:
        structlog.reset_defaults()
        root.handlers = handlers
        root.setLevel(old_level)


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """Logging configured as JSON lines into a buffer."""
    with captured_logs() as stream:
        yield stream


def assert_port_free(port: int) -> None:
    """Listen on ``port`` as a restarted server would (SO_REUSEADDR, so TIME_WAIT is fine)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen()


@pytest.fixture
def listening_socket() -> Iterator[socket.socket]:
    """A loopback socket listening on a port the OS chose, to make a port busy."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock
    sock.close()


class GatedCollector:
    """A custom collector that blocks off the main thread until released, counting those calls."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.calls = 0
        self.threads: list[threading.Thread] = []

    def collect(self) -> list[Metric]:
        self.threads.append(threading.current_thread())
        if threading.current_thread() is not threading.main_thread():  # tests read on main
            self.calls += 1
            self.gate.wait(10)
        return [GaugeMetricFamily("gated_value", "Released by the test", value=1)]


class BrokenCollector:
    """A custom collector that always raises."""

    def collect(self) -> list[Metric]:
        raise RuntimeError("upstream\nunavailable")


@pytest.fixture
def gated_registry() -> Iterator[tuple[CollectorRegistry, GatedCollector]]:
    """A registry holding a GatedCollector, released at teardown whatever happened."""
    registry = CollectorRegistry()
    gated = GatedCollector()
    registry.register(gated)
    yield registry, gated
    gated.gate.set()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client session."""
    async with aiohttp.ClientSession() as session:
        yield session
