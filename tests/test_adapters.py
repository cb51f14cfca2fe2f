"""The two adapters, aiohttp's MetricsServer and the ASGI app under uvicorn, answer alike."""

from __future__ import annotations

import base64
import itertools
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import aiohttp
import bcrypt
import prometheus_client
import pytest
from prometheus_client import CollectorRegistry

from bigbrotr.core.asgi import make_asgi_app
from bigbrotr.core.base_service import BaseService, BaseServiceConfig
from bigbrotr.core.metrics import MetricsConfig
from bigbrotr.core.server import MetricsServer
from bigbrotr.core.yaml import ConfigFileError
from bigbrotr.testing import ServiceHarness
from tests.support.asgi import Serve, user_registry

PATHS = ["/metrics", "/metrics?name[]=jobs", "/healthz", "/livez", "/readyz", "/readyz?verbose",
         "/", "/status.json", "/nope"]  # fmt: skip
METHODS = ["GET", "HEAD", "POST"]
GOOD, BAD = ("prometheus", "s3cret"), ("prometheus", "wrong")
CREDENTIALS: list[tuple[str, str] | None] = [None, GOOD, BAD]
NEGOTIATION = [
    {},
    {"Accept": "application/openmetrics-text; version=1.0.0", "Accept-Encoding": "gzip"},
    {"Accept": "text/plain;q=0.5, */*;q=0.1", "Accept-Encoding": "gzip;q=0, identity"},
]
#: Headers each web server sets for itself.
SERVERS_OWN = {"date", "server"}


class Flaky(BaseService[BaseServiceConfig]):
    """Fails its second cycle, so the status page has an error to show."""

    SERVICE_NAME = "adapters"

    def __init__(self, config: BaseServiceConfig | None = None) -> None:
        super().__init__(config)
        self.cycles = 0

    async def run(self) -> None:
        self.cycles += 1
        if self.cycles == 2:
            raise RuntimeError("<b>second</b>")


@pytest.fixture
def no_created_series() -> Iterator[None]:
    """Two registries render the same bytes only without ``_created`` (their birth times)."""
    prometheus_client.disable_created_metrics()
    try:
        yield
    finally:
        prometheus_client.enable_created_metrics()


@pytest.fixture
def web_config(tmp_path: Path) -> Path:
    """An exporter-toolkit file with one basic-auth user and a header of its own."""
    hashed = bcrypt.hashpw(GOOD[1].encode(), bcrypt.gensalt(rounds=4)).decode()
    path = tmp_path / "web.yml"
    path.write_text(
        f"basic_auth_users:\n  {GOOD[0]}: '{hashed}'\n"
        "http_server_config:\n  headers:\n    X-Frame-Options: deny\n"
    )
    return path


def request_headers(credentials: tuple[str, str] | None, extra: dict[str, str]) -> dict[str, str]:
    headers = dict(extra)
    if credentials is not None:
        token = base64.b64encode(":".join(credentials).encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    return headers


async def fetch(
    session: aiohttp.ClientSession, method: str, url: str, headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes]:
    async with session.request(method, url, headers=headers) as response:
        body = await response.read()
        assert len(response.headers.getall("Server", [])) <= 1, "two Server headers"
        kept = {k.lower(): v for k, v in response.headers.items() if k.lower() not in SERVERS_OWN}
        return response.status, kept, body


@pytest.mark.usefixtures("no_created_series")
async def test_both_adapters_answer_every_request_alike(
    bigbrotr: Any, web_config: Path, serve: Serve
) -> None:
    """Each path x method x credentials x negotiation: same status, headers and body."""
    harness: ServiceHarness[Flaky] = bigbrotr(Flaky, {"interval": 10})
    assert await harness.run_cycles(3) == [True, False, True]
    harness.clock.advance(1000)  # stale: /readyz answers 503, and the page says why
    service = harness.service
    unprotected = frozenset({"/healthz"})
    server = MetricsServer(
        MetricsConfig(
            enabled=True, port=0, web_config_file=str(web_config), unprotected_paths=unprotected
        ),
        user_registry(),
        health=service.health,
        status=service.status,
    )
    asgi_registry = user_registry()
    # The aiohttp server counts its connections in its registry; a server started and
    # stopped at once gives the ASGI app's registry the same families (at 0), so the
    # two bodies can be compared byte for byte.
    families_only = MetricsServer(MetricsConfig(enabled=True, port=0), asgi_registry)
    await families_only.start()
    await families_only.stop()
    app = make_asgi_app(
        asgi_registry,
        path="/metrics",
        service=service,
        web_config_file=web_config,
        unprotected_paths=unprotected,
    )
    await server.start()
    assert server.url is not None
    aiohttp_base = server.url.removesuffix("/metrics")
    matrix = list(itertools.product(PATHS, METHODS, CREDENTIALS, NEGOTIATION))
    statuses = set()
    try:
        async with (
            serve(app) as asgi_base,
            aiohttp.ClientSession(auto_decompress=False) as session,
        ):
            for path, method, credentials, negotiation in matrix:
                headers = request_headers(credentials, negotiation)
                ours = await fetch(session, method, aiohttp_base + path, headers)
                theirs = await fetch(session, method, asgi_base + path, headers)
                assert ours == theirs, (path, method, credentials, negotiation)
                statuses.add(ours[0])
    finally:
        await server.stop()
        app.close()
    assert len(matrix) == 243
    # The matrix reaches every kind of answer, so "alike" covers each of them.
    assert statuses == {200, 401, 404, 405, 503}


def test_the_asgi_app_leaves_tls_to_its_server(pki: Any) -> None:
    """A web config with tls_server_config is refused by make_asgi_app, naming the field."""
    path = pki.directory / "asgi-web.yml"
    path.write_text("tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n")
    with pytest.raises(ConfigFileError, match=r"asgi-web\.yml: field 'tls_server_config'"):
        make_asgi_app(CollectorRegistry(), web_config_file=path)


async def test_without_options_the_asgi_app_adds_no_header_of_its_own(serve: Serve) -> None:
    """make_asgi_app() as before: the metrics' own headers only, no configured ones."""
    async with (
        serve(make_asgi_app(user_registry())) as base,
        aiohttp.ClientSession() as session,
    ):
        status, headers, _ = await fetch(session, "GET", f"{base}/healthz", {})
    assert status == 200  # every path is the metrics, when mounted or alone
    assert set(headers) == {"content-type", "content-length", "content-encoding", "vary"}


async def test_a_mounted_app_serves_health_under_its_prefix(bigbrotr: Any) -> None:
    """Mounted under /ops (ASGI root_path), /ops/healthz is the service's, not the metrics."""
    harness: ServiceHarness[Flaky] = bigbrotr(Flaky)
    app = make_asgi_app(user_registry(), service=harness.service)
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    for path in ("/ops/healthz", "/ops/anything"):
        scope: dict[str, Any] = {"type": "http", "method": "GET", "path": path, "root_path": "/ops",
                 "headers": [], "query_string": b""}  # fmt: skip
        await app(scope, receive, send)
    app.close()
    health, metrics = sent[1]["body"], sent[3]["body"]
    assert health == b"ok\n"
    assert b"# TYPE jobs_total counter" in metrics  # every other path: the metrics
