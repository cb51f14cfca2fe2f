"""Shared fixtures: unique names, scripted services, logs, ports, collectors, a PKI, HTTP.

Tests take these as arguments and never import this module; the types some
of them return (to subclass or annotate with) are in ``tests.support``.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import logging
import socket
from collections.abc import AsyncIterator, Callable, Iterator

import aiohttp
import pytest
import structlog
import uvicorn
from prometheus_client import CollectorRegistry

from bigbrotr.core.asgi import MetricsApp
from bigbrotr.core.base_service import BaseServiceConfig
from bigbrotr.core.health import HealthSnapshot
from bigbrotr.core.logger import LogFormat, configure_logging
from tests.support.asgi import Serve
from tests.support.collectors import GatedCollector
from tests.support.logs import CapturedLogs
from tests.support.pki import PKI
from tests.support.services import MetricsOn, Scripted, ScriptedService, UniqueName


@pytest.fixture(scope="session")
def unique_name() -> UniqueName:
    """Make a service name no other test uses (the metric singletons are shared)."""
    names = itertools.count()

    def make(prefix: str = "svc") -> str:
        return f"{prefix}_{next(names)}"

    return make


@pytest.fixture(scope="session")
def scripted(unique_name: UniqueName) -> Scripted:
    """Make a ``ScriptedService`` subclass with a unique SERVICE_NAME, or the ``name`` given."""

    def make(name: str | None = None) -> type[ScriptedService]:
        return type("Scripted", (ScriptedService,), {"SERVICE_NAME": name or unique_name()})

    return make


@pytest.fixture(scope="session")
def metrics_on() -> MetricsOn:
    """Make a base config with metrics enabled on a free port, and ``fields``."""

    def make(**fields: object) -> BaseServiceConfig:
        return BaseServiceConfig(metrics={"enabled": True, "port": 0}, **fields)  # type: ignore[arg-type]

    return make


@pytest.fixture(scope="session")
def healthy() -> HealthSnapshot:
    """A service whose every liveness and readiness check passes; tests replace a field."""
    return HealthSnapshot(
        now=1000.0,
        started_at=900.0,
        loop_blocked_for=0.0,
        loop_block_threshold=1.0,
        consecutive_failures=0,
        max_consecutive_failures=5,
        last_success_at=990.0,
        cycle_started_at=None,
        stale_after=120.0,
        shutting_down=False,
    )


@contextlib.contextmanager
def _captured_logs(
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
def captured_logs() -> CapturedLogs:
    """Log into a buffer for a ``with`` block (service, level, format), then restore logging."""
    return _captured_logs


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """Logging configured as JSON lines into a buffer."""
    with _captured_logs() as stream:
        yield stream


def _assert_port_free(port: int) -> None:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen()


@pytest.fixture(scope="session")
def assert_port_free() -> Callable[[int], None]:
    """Check a port is free: listen on it as a restarted server would (TIME_WAIT is fine)."""
    return _assert_port_free


@pytest.fixture
def listening_socket() -> Iterator[socket.socket]:
    """A loopback socket listening on a port the OS chose, to make a port busy."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock
    sock.close()


@pytest.fixture
def gated_registry() -> Iterator[tuple[CollectorRegistry, GatedCollector]]:
    """A registry holding a GatedCollector, released at teardown whatever happened."""
    registry = CollectorRegistry()
    gated = GatedCollector()
    registry.register(gated)
    yield registry, gated
    gated.gate.set()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    """A CA, a server and a client certificate from it, and a client from another CA."""
    return PKI.create(tmp_path_factory.mktemp("pki"))


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client session."""
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def serve() -> Serve:
    """Serve an ASGI app with a real uvicorn on a free loopback port; yields its base URL."""

    @contextlib.asynccontextmanager
    async def serving(app: MetricsApp) -> AsyncIterator[str]:
        # log_config=None: uvicorn's default dictConfig would bind handlers to this
        # test's captured stderr, which later tests would find closed.
        config = uvicorn.Config(
            app, host="127.0.0.1", port=0, log_level="warning", log_config=None, lifespan="on"
        )
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())
        try:
            while not server.started:
                if task.done():
                    task.result()
                    pytest.fail("uvicorn returned without starting")
                await asyncio.sleep(0.01)
            port = server.servers[0].sockets[0].getsockname()[1]
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            await task

    return serving
