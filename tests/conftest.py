"""Shared fixtures: free ports, a scrape helper, service classes with unique names, a PKI."""

from __future__ import annotations

import contextlib
import datetime
import io
import ipaddress
import itertools
import logging
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import structlog
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric

from bigbrotr.core.base_service import BaseService, BaseServiceConfig
from bigbrotr.core.clock import using_clock
from bigbrotr.core.logger import LogFormat, configure_logging
from bigbrotr.testing import FakeClock

_names = itertools.count()


def unique_name(prefix: str = "svc") -> str:
    """Return a service name no other test uses (the metric singletons are shared)."""
    return f"{prefix}_{next(_names)}"


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
        self.fake_clock = FakeClock()
        with using_clock(self.fake_clock):
            super().__init__(config)
        self.script = list(script or [])
        self.calls: list[str] = []
        self.cycle_starts: list[float] = []
        self.waits: list[float] = []

    async def wait(self, timeout: float) -> bool:  # noqa: ASYNC109
        self.waits.append(timeout)
        return await super().wait(timeout)

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


@dataclass
class Issued:
    """A certificate and its key, as PEM files."""

    cert: Path
    key: Path


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def issue(
    directory: Path, name: str, issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    *, ca: bool = False, client: bool = False,
) -> tuple[Issued, x509.Certificate, ec.EllipticCurvePrivateKey]:  # fmt: skip
    """A key and certificate signed by ``issuer`` (self-signed when None), written as PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(issuer[0].subject if issuer else _name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    cert = builder.sign(issuer[1] if issuer else key, hashes.SHA256())
    files = Issued(directory / f"{name}.pem", directory / f"{name}.key")
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files, cert, key


@dataclass
class PKI:
    """The certificates a test needs, in one directory (where web.yml goes too)."""

    ca: Issued
    server: Issued
    client: Issued
    stranger: Issued  # a client certificate from another CA
    directory: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    """A CA, a server and a client certificate from it, and a client from another CA."""
    directory = tmp_path_factory.mktemp("pki")
    ca, ca_cert, ca_key = issue(directory, "ca", None, ca=True)
    server, _, _ = issue(directory, "server", (ca_cert, ca_key))
    client, _, _ = issue(directory, "client", (ca_cert, ca_key), client=True)
    _, other_cert, other_key = issue(directory, "other-ca", None, ca=True)
    stranger, _, _ = issue(directory, "stranger", (other_cert, other_key), client=True)
    return PKI(ca, server, client, stranger, directory)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client session."""
    async with aiohttp.ClientSession() as session:
        yield session
