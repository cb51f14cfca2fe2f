import asyncio
import base64
import contextlib
import io
import json
import socket
import ssl
import subprocess
import threading
from pathlib import Path
from typing import Any

import aiohttp
import bcrypt
import pytest
from prometheus_client import CollectorRegistry, Gauge

from bigbrotr.cli import main
from bigbrotr.core import server as server_module
from bigbrotr.core._tls_sniff import REFUSAL
from bigbrotr.core.metrics import MetricsConfig
from bigbrotr.core.server import MetricsServer
from bigbrotr.core.web_config import WebConfig, load_web_config
from bigbrotr.core.yaml import ConfigFileError
from tests.support.pki import PKI, Issued

PASSWORD = "s3cret-pass"


def write_web_config(pki: PKI, text: str) -> Path:
    path = pki.directory / "web.yml"
    path.write_text(text)
    return path


def tls_block(pki: PKI, extra: str = "") -> str:
    return f"tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n{extra}"


def client_context(
    pki: PKI, cert: Issued | None = None, tls_max: ssl.TLSVersion | None = None
) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=pki.ca.cert)
    if cert is not None:
        context.load_cert_chain(cert.cert, cert.key)
    if tls_max is not None:
        context.maximum_version = tls_max
    return context


async def scrape(url: str, context: ssl.SSLContext | None = None, auth: str | None = None) -> int:
    headers = {"Authorization": auth} if auth else {}
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, ssl=context if context else False, headers=headers) as response,
    ):
        return response.status


async def start(
    web_config: Path, registry: CollectorRegistry | None = None, **config: Any
) -> MetricsServer:
    registry = registry or CollectorRegistry()
    Gauge("secret_business_value", "Never shown to strangers.", registry=registry).set(1)
    settings = MetricsConfig(enabled=True, port=0, web_config_file=str(web_config), **config)
    server = MetricsServer(settings, registry)
    await server.start()
    return server


def https(server: MetricsServer) -> str:
    assert server.url is not None and server.url.startswith("https://")
    return server.url


def exchange(port: int, sent: bytes) -> bytes:
    """Send ``sent`` on a new connection; all the server answers before it closes."""
    received = b""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
        contextlib.suppress(ConnectionResetError),  # closed with our bytes unread
    ):
        sock.sendall(sent)
        while chunk := sock.recv(65536):
            received += chunk
    return received


async def test_tls_is_served(pki: PKI) -> None:
    """A TLS handshake with a client trusting the CA succeeds, at the https:// URL."""
    server = await start(write_web_config(pki, tls_block(pki)))
    try:
        assert server.url == f"https://127.0.0.1:{server.port}/metrics"
        assert await scrape(server.url, client_context(pki)) == 200
    finally:
        await server.stop()


@pytest.mark.parametrize(
    ("sent", "answer"),
    [
        (b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", REFUSAL),
        (b"HEAD /metrics HTTP/1.0\r\n\r\n", REFUSAL),
        (b"GET", REFUSAL),
        (b"\x00\x01 neither TLS nor HTTP\r\n\r\n", b""),
    ],
    ids=["GET", "HEAD", "GET cut short", "neither"],
)
async def test_plain_http_on_the_tls_port_gets_gos_400(
    pki: PKI, sent: bytes, answer: bytes
) -> None:
    """Plain HTTP to the TLS port gets Go's 400 and a close; other bytes just the close."""
    server = await start(write_web_config(pki, tls_block(pki)))
    assert server.port is not None
    try:
        assert await asyncio.to_thread(exchange, server.port, sent) == answer
        http_url = https(server).replace("https://", "http://")
        async with (
            aiohttp.ClientSession() as session,
            session.get(http_url) as response,
        ):  # what a scrape job with the wrong scheme sees
            assert response.status == 400
            assert await response.text() == "Client sent an HTTP request to an HTTPS server.\n"
        assert await scrape(https(server), client_context(pki)) == 200
    finally:
        await server.stop()


def idle_closes(registry: CollectorRegistry) -> float | None:
    return registry.get_sample_value(
        "metrics_handler_connections_closed_total", {"reason": "idle_timeout"}
    )


@pytest.mark.parametrize(
    "sent", [b"", b"\x16\x03\x01\x00"], ids=["sends nothing", "handshake never finished"]
)
async def test_silent_clients_on_the_tls_port_are_cut_at_idle_timeout(
    pki: PKI, sent: bytes
) -> None:
    """A TLS-port client that sends nothing, or stops mid-handshake, is closed and counted."""
    registry = CollectorRegistry()
    server = await start(
        write_web_config(pki, tls_block(pki)), registry, idle_timeout=0.5, render_timeout=0.2
    )
    assert server.port is not None
    try:
        # exchange gives up after 5 s; asyncio's own handshake timeout is 60 s.
        assert await asyncio.to_thread(exchange, server.port, sent) == b""
        assert idle_closes(registry) == 1
    finally:
        await server.stop()


async def served_eventually(url: str, context: ssl.SSLContext) -> None:
    """Scrape until the server has seen a closed connection go and serves again."""
    for _ in range(100):
        with contextlib.suppress(aiohttp.ClientError):
            if await scrape(url, context) == 200:
                return
        await asyncio.sleep(0.05)
    pytest.fail("the server did not serve again: a connection's slot was never freed")


async def refused_eventually(port: int) -> None:
    """Send plain HTTP until it gets Go's 400 (not the close of a connection over the limit)."""
    for _ in range(100):
        if await asyncio.to_thread(exchange, port, b"GET / HTTP/1.1\r\n\r\n") == REFUSAL:
            return
        await asyncio.sleep(0.05)
    pytest.fail("plain HTTP never got the 400: the slot was never freed")


async def test_the_connection_limit_holds_on_the_tls_port(pki: PKI) -> None:
    """Refused, failed and abandoned connections free their slot once; the limit still holds."""
    extra = "  client_ca_file: ca.pem\n  client_auth_type: RequireAndVerifyClientCert\n"
    registry = CollectorRegistry()
    server = await start(write_web_config(pki, tls_block(pki, extra)), registry, max_connections=1)
    url, port, good = https(server), server.port, client_context(pki, pki.client)
    assert port is not None
    try:
        assert await scrape(url, good) == 200
        await refused_eventually(port)  # once the scrape's connection has freed the slot
        await served_eventually(url, good)
        with pytest.raises(aiohttp.ClientError):  # a handshake the server fails
            await scrape(url, client_context(pki, pki.stranger))
        await served_eventually(url, good)
        socket.create_connection(("127.0.0.1", port)).close()  # gone before the first byte
        await served_eventually(url, good)
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"\x16\x03\x01\x00")  # gone during the handshake
        await served_eventually(url, good)
        for _ in range(20):  # the slot may still be taken by the last scrape's connection
            with socket.create_connection(("127.0.0.1", port)):  # holds the one slot, silent
                plain = b"GET / HTTP/1.1\r\n\r\n"
                if await asyncio.to_thread(exchange, port, plain) == b"":
                    break  # closed at once: over the limit
            await asyncio.sleep(0.05)
        else:
            pytest.fail("a second connection was never refused while one held the slot")
        over = registry.get_sample_value(
            "metrics_handler_connections_closed_total", {"reason": "max_connections"}
        )
        assert over is not None and over >= 1
        await served_eventually(url, good)  # the held one freed its slot (and nothing is left)
    finally:
        await server.stop()


async def test_min_version_tls13_refuses_tls12(pki: PKI) -> None:
    """With min_version TLS13, a client that speaks at most TLS 1.2 cannot connect."""
    server = await start(write_web_config(pki, tls_block(pki, "  min_version: TLS13\n")))
    try:
        with pytest.raises(aiohttp.ClientError):
            await scrape(https(server), client_context(pki, tls_max=ssl.TLSVersion.TLSv1_2))
        assert await scrape(https(server), client_context(pki)) == 200
    finally:
        await server.stop()


async def test_client_certificates_are_required_and_verified(pki: PKI) -> None:
    """RequireAndVerifyClientCert: the CA's client gets in; no cert or another CA's does not."""
    extra = "  client_ca_file: ca.pem\n  client_auth_type: RequireAndVerifyClientCert\n"
    server = await start(write_web_config(pki, tls_block(pki, extra)))
    try:
        assert await scrape(https(server), client_context(pki, pki.client)) == 200
        for refused in (None, pki.stranger):
            with pytest.raises(aiohttp.ClientError):
                await scrape(https(server), client_context(pki, refused))
    finally:
        await server.stop()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def test_basic_auth_accepts_and_refuses(pki: PKI) -> None:
    """Right credentials get metrics; wrong, unknown, missing or malformed ones get a bare 401."""
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    server = await start(write_web_config(pki, f"basic_auth_users:\n  prometheus: '{hashed}'\n"))
    assert server.url is not None
    try:
        assert await scrape(server.url, auth=basic("prometheus", PASSWORD)) == 200
        assert await scrape(server.url, auth=basic("prometheus", PASSWORD)) == 200  # cached
        for auth in [basic("prometheus", "wrong"), basic("nobody", PASSWORD), None,
                     "Basic not-base64!", "Bearer token", basic("prometheus", "")]:  # fmt: skip
            async with aiohttp.ClientSession() as session:
                headers = {"Authorization": auth} if auth else {}
                async with session.get(server.url, headers=headers) as response:
                    assert response.status == 401, auth
                    assert response.headers["WWW-Authenticate"].startswith("Basic ")
                    body = await response.text()
            assert body == "unauthorized\n" and "secret_business" not in body
    finally:
        await server.stop()


async def test_every_response_carries_safe_headers() -> None:
    """Nosniff and no-store by default; Server names no version; without any web config too."""
    registry = CollectorRegistry()
    server = MetricsServer(MetricsConfig(enabled=True, port=0), registry)
    await server.start()
    assert server.url is not None
    try:
        async with aiohttp.ClientSession() as session:
            for url in (server.url, server.url + "/missing"):
                async with session.get(url) as response:
                    assert response.headers["X-Content-Type-Options"] == "nosniff"
                    assert response.headers["Cache-Control"] == "no-store"
                    assert response.headers["Server"] == "bigbrotr"
    finally:
        await server.stop()


TLS = "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (TLS.replace("server.pem", "missing.pem"), "tls_server_config.cert_file"),
        (TLS.replace("server.key", "client.key"), "tls_server_config.key_file"),
        (TLS + "  client_auth_type: Bogus\n", "tls_server_config.client_auth_type"),
        (
            TLS + "  client_auth_type: RequireAnyClientCert\n  client_ca_file: ca.pem\n",
            "tls_server_config.client_auth_type",
        ),
        (TLS + "  client_auth_type: VerifyClientCertIfGiven\n", "tls_server_config.client_ca_file"),
        ("basic_auth_users:\n  prometheus: not-a-hash\n", "basic_auth_users.prometheus"),
        ("tls_server_confg: {}\n", "tls_server_confg"),
    ],
    ids=["missing cert", "other key", "bad enum", "cannot honour", "no CA", "bad hash", "unknown"],
)
def test_a_bad_file_is_a_config_error_naming_the_key(
    pki: PKI, text: str, key: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Every mistake in the file is one line naming file and key, in load and in `check`."""
    path = write_web_config(pki, text)
    with pytest.raises(ConfigFileError, match=key.replace(".", r"\.")):
        load_web_config(path)
    config = tmp_path / "service.yaml"
    config.write_text(f"metrics:\n  enabled: true\n  web_config_file: {path}\n")
    assert main(["check", "demo", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and str(path) in err and key in err


def test_a_misspelt_key_names_its_line_and_the_key_meant(pki: PKI) -> None:
    """A typo inside a section gives its line and the exporter-toolkit key it is closest to."""
    path = write_web_config(pki, tls_block(pki, "  min_versoin: TLS13\n"))
    with pytest.raises(ConfigFileError) as info:
        load_web_config(path)
    assert str(info.value) == (
        f"{path}: unknown field 'tls_server_config.min_versoin' at line 4"
        " (did you mean 'tls_server_config.min_version'?)"
    )


def test_promtool_accepts_the_file_bigbrotr_accepts(pki: PKI) -> None:
    """The same file, TLS, client certificates and basic auth, passes promtool check web-config."""
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    extra = "  client_ca_file: ca.pem\n  client_auth_type: RequireAndVerifyClientCert\n"
    extra += "  min_version: TLS13\n"
    path = write_web_config(pki, tls_block(pki, extra) + f"basic_auth_users:\n  p: '{hashed}'\n")
    load_web_config(path)
    check = subprocess.run(
        ["promtool", "check", "web-config", str(path)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr


async def test_reload_rotates_certificates_and_users(
    pki: PKI, tmp_path: Path, log_stream: io.StringIO
) -> None:
    """A re-read file brings a new certificate and password; a bad one keeps the running ones."""
    rotated = pki.issue_server("server-rotated")
    old_hash = bcrypt.hashpw(b"old", bcrypt.gensalt(rounds=4)).decode()
    new_hash = bcrypt.hashpw(b"new", bcrypt.gensalt(rounds=4)).decode()
    path = write_web_config(pki, tls_block(pki) + f"basic_auth_users:\n  p: '{old_hash}'\n")
    server = await start(path)
    url, context = https(server), client_context(pki)
    port = int(url.split(":")[2].split("/")[0])

    def served_certificate() -> str:
        return ssl.get_server_certificate(("127.0.0.1", port))

    try:
        assert await scrape(url, context, basic("p", "old")) == 200
        assert served_certificate() == pki.server.cert.read_text()
        path.write_text(
            tls_block(pki)
            .replace("server.pem", "server-rotated.pem")
            .replace("server.key", "server-rotated.key")
            + f"basic_auth_users:\n  p: '{new_hash}'\n"
        )
        assert await server.reload_web_config()
        assert served_certificate() == rotated.cert.read_text()
        assert await scrape(url, context, basic("p", "old")) == 401  # not from the cache
        assert await scrape(url, context, basic("p", "new")) == 200
        for bad in ("basic_auth_users:\n  p: nope\n", "basic_auth_users: {}\n"):
            path.write_text(bad)
            assert not await server.reload_web_config()
        assert await scrape(url, context, basic("p", "new")) == 200
        errors = [json.loads(line) for line in log_stream.getvalue().splitlines()]
        errors = [line for line in errors if line["event"].startswith("web config not reloaded")]
        assert [line["level"] for line in errors] == ["error", "error"]
        assert "basic_auth_users.p" in errors[0]["reason"]
        assert "turning TLS on or off needs a restart" in errors[1]["reason"]
    finally:
        await server.stop()


async def test_only_listed_paths_are_left_open(pki: PKI) -> None:
    """With basic auth every path needs it, but those in metrics.unprotected_paths."""
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    web = write_web_config(pki, f"basic_auth_users:\n  p: '{hashed}'\n")
    config = MetricsConfig(
        enabled=True, port=0, web_config_file=str(web), unprotected_paths=frozenset({"/metrics"})
    )
    server = MetricsServer(config, CollectorRegistry())
    await server.start()
    assert server.url is not None
    try:
        assert await scrape(server.url) == 200
        assert await scrape(server.url.replace("/metrics", "/other")) == 401
    finally:
        await server.stop()


async def test_client_certificates_if_given_are_verified(pki: PKI) -> None:
    """VerifyClientCertIfGiven: no certificate is fine, the CA's is fine, another CA's is not."""
    extra = "  client_ca_file: ca.pem\n  client_auth_type: VerifyClientCertIfGiven\n"
    server = await start(write_web_config(pki, tls_block(pki, extra)))
    try:
        assert await scrape(https(server), client_context(pki)) == 200
        assert await scrape(https(server), client_context(pki, pki.client)) == 200
        with pytest.raises(aiohttp.ClientError):
            await scrape(https(server), client_context(pki, pki.stranger))
    finally:
        await server.stop()


async def test_cipher_suites_limit_tls12(pki: PKI) -> None:
    """cipher_suites (Go's names) restrict TLS 1.2; a client offering none of them is refused."""
    extra = "  max_version: TLS12\n  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]\n"
    server = await start(write_web_config(pki, tls_block(pki, extra)))
    try:
        assert await scrape(https(server), client_context(pki)) == 200
        other = client_context(pki)
        other.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")
        with pytest.raises(aiohttp.ClientError):
            await scrape(https(server), other)
    finally:
        await server.stop()
    with pytest.raises(ConfigFileError, match=r"not a TLS 1\.2 suite Go offers: TLS_RSA_MADE_UP"):
        load_web_config(
            write_web_config(pki, tls_block(pki, "  cipher_suites: [TLS_RSA_MADE_UP]\n"))
        )


async def test_a_password_past_bcrypts_72_bytes_is_a_plain_401(pki: PKI) -> None:
    """A password over 72 bytes (bcrypt 5 raises) is refused as any wrong one: 401, headers."""
    hashed = bcrypt.hashpw(b"short", bcrypt.gensalt(rounds=4)).decode()
    config = f"basic_auth_users:\n  p: '{hashed}'\nhttp_server_config:\n  headers:\n    X-Mine: y\n"
    server = await start(write_web_config(pki, config))
    assert server.url is not None
    try:
        async with aiohttp.ClientSession() as session:
            for user in ("p", "nobody"):
                token = base64.b64encode(f"{user}:{'x' * 100}".encode()).decode()
                headers = {"Authorization": f"Basic {token}"}
                async with session.get(server.url, headers=headers) as response:
                    assert response.status == 401, user
                    assert response.headers["Server"] == "bigbrotr"
                    assert response.headers["X-Mine"] == "y"
    finally:
        await server.stop()


async def test_the_last_reload_wins_whatever_order_the_reads_finish_in(
    pki: PKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slow earlier reload finishing last is dropped: a revoked user stays revoked."""

    def users(name: str) -> str:
        return (
            f"basic_auth_users:\n  {name}: '{bcrypt.hashpw(b'pw', bcrypt.gensalt(4)).decode()}'\n"
        )

    path = write_web_config(pki, users("alice"))
    server = await start(path)
    assert server.url is not None
    read_v1, release_v1 = threading.Event(), threading.Event()
    real = load_web_config

    def held_first(file: str) -> WebConfig:
        loaded = real(file)
        if not read_v1.is_set():  # the first reload: its file is read, its end held back
            read_v1.set()
            release_v1.wait(10)
        return loaded

    monkeypatch.setattr(server_module, "load_web_config", held_first)
    try:
        path.write_text(users("alice"))  # v1: alice only
        first = asyncio.create_task(server.reload_web_config())
        assert await asyncio.to_thread(read_v1.wait, 10)
        path.write_text(users("bob"))  # v2: alice revoked
        assert await server.reload_web_config() is True
        release_v1.set()
        assert await first is False
        async with aiohttp.ClientSession() as session:
            answers = {}
            for user in ("alice", "bob"):
                token = base64.b64encode(f"{user}:pw".encode()).decode()
                headers = {"Authorization": f"Basic {token}"}
                async with session.get(server.url, headers=headers) as response:
                    answers[user] = response.status
        assert answers == {"alice": 401, "bob": 200}
    finally:
        release_v1.set()
        await server.stop()


def test_failed_credentials_are_remembered_so_a_repeating_flood_costs_one_check(
    pki: PKI,
) -> None:
    """A failed check is remembered (known user or not); other credentials are not."""
    hashed = bcrypt.hashpw(b"right", bcrypt.gensalt(rounds=4)).decode()
    auth = load_web_config(write_web_config(pki, f"basic_auth_users:\n  p: '{hashed}'\n")).auth
    assert auth is not None

    def header(user: str, password: str) -> str:
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    for user in ("p", "nobody"):
        wrong = header(user, "wrong")
        assert auth.known(wrong) is None
        assert auth.check(wrong) is False
        assert auth.known(wrong) is False  # the next identical try needs no bcrypt
        assert auth.known(header(user, "other")) is None
    assert auth.check(header("p", "right")) is True
    assert auth.known(header("p", "right")) is True


async def test_a_reload_with_the_same_users_keeps_what_was_checked(pki: PKI) -> None:
    """SIGHUP with users unchanged keeps remembered checks (no bcrypt); changed users do not."""
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()
    users = f"basic_auth_users:\n  p: '{hashed}'\n"
    path = write_web_config(pki, users)
    server = await start(path)
    assert server.url is not None
    right = "Basic " + base64.b64encode(b"p:pw").decode()
    wrong = "Basic " + base64.b64encode(b"p:guess").decode()
    try:
        async with aiohttp.ClientSession() as session:
            for header in (right, wrong):
                async with session.get(server.url, headers={"Authorization": header}):
                    pass
        path.write_text(users + "http_server_config:\n  headers:\n    X-New: y\n")
        assert await server.reload_web_config()
        web = server.web_config
        assert web is not None and web.auth is not None
        assert web.headers["X-New"] == "y"  # the new file is in use
        assert web.auth.known(right) is True  # before: None, a bcrypt per client again
        assert web.auth.known(wrong) is False
        rehashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()
        path.write_text(f"basic_auth_users:\n  p: '{rehashed}'\n")
        assert await server.reload_web_config()
        web = server.web_config
        assert web is not None and web.auth is not None
        assert web.auth.known(right) is None  # a changed hash is checked afresh
    finally:
        await server.stop()


def raw_exchange(port: int, sent: bytes) -> bytes:
    """Send bytes over plain TCP; everything the server answers before it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(sent)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        return answer


@pytest.mark.parametrize(
    "sent",
    [b"GET / HTTP/1.1\r\nno colon here\r\n\r\n", b"BREW /pot HTCPCP/1.0\r\n\r\n"],
    ids=["bad header", "bad request line"],
)
async def test_aiohttps_own_errors_carry_our_server_and_configured_headers(
    pki: PKI, sent: bytes
) -> None:
    """A malformed request's 400 says Server: bigbrotr (no aiohttp version), with our headers."""
    server = await start(write_web_config(pki, "http_server_config:\n  headers:\n    X-Mine: y\n"))
    assert server.port is not None
    try:
        answer = await asyncio.to_thread(raw_exchange, server.port, sent)
    finally:
        await server.stop()
    head = answer.split(b"\r\n\r\n")[0].decode().lower() + "\r\n"
    assert head.startswith(("http/1.0 400", "http/1.1 400")), head
    assert "\r\nserver: bigbrotr\r\n" in head and "aiohttp" not in head
    assert "\r\nx-mine: y\r\n" in head and "\r\nx-content-type-options: nosniff\r\n" in head
