import asyncio
import json
import socket
import subprocess
import urllib.request
from pathlib import Path

import bcrypt
from prometheus_client import CollectorRegistry, Gauge

from bigbrotr.core.metrics import MetricsConfig
from bigbrotr.core.server import MetricsServer
from tests.support.pki import PKI

PASSWORD = "prom-pass"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def target_health(api: str) -> dict[str, tuple[str, str]]:
    """Job -> (health: "up", "down" or "unknown"; last error) from Prometheus' targets API."""
    with urllib.request.urlopen(f"{api}/api/v1/targets", timeout=5) as response:
        targets = json.load(response)["data"]["activeTargets"]
    return {target["labels"]["job"]: (target["health"], target["lastError"]) for target in targets}


async def test_prometheus_scrapes_tls_and_basic_auth(pki: PKI, tmp_path: Path) -> None:
    """A real Prometheus scrapes the TLS + basic-auth endpoint; a wrong password or scheme fails."""
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    web = pki.directory / "web-prometheus.yml"
    web.write_text(
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n"
        f"basic_auth_users:\n  prometheus: '{hashed}'\n"
    )
    registry = CollectorRegistry()
    Gauge("protected_value", "Behind TLS and a password.", registry=registry).set(7)
    server = MetricsServer(MetricsConfig(enabled=True, port=0, web_config_file=str(web)), registry)
    await server.start()
    api_port = free_port()

    def job(name: str, password: str, scheme: str = "https") -> str:
        return (
            f"  - job_name: {name}\n    scheme: {scheme}\n    scrape_interval: 1s\n"
            f"    tls_config: {{ca_file: {pki.ca.cert}}}\n"
            f"    basic_auth: {{username: prometheus, password: {password}}}\n"
            f"    static_configs: [{{targets: ['127.0.0.1:{server.port}']}}]\n"
        )

    config = tmp_path / "prometheus.yml"
    jobs = job("right", PASSWORD) + job("wrong", "not-it") + job("plain", PASSWORD, "http")
    config.write_text("scrape_configs:\n" + jobs)
    log_file = (tmp_path / "prometheus.log").open("wb")
    prometheus = await asyncio.create_subprocess_exec(
        "prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{api_port}",
        stdout=subprocess.DEVNULL, stderr=log_file,
    )  # fmt: skip
    api = f"http://127.0.0.1:{api_port}"
    try:
        expected = {"right": "up", "wrong": "down", "plain": "down"}
        health: dict[str, tuple[str, str]] = {}
        for _ in range(300):
            try:
                health = await asyncio.to_thread(target_health, api)
            except OSError:
                health = {}
            if {job: state for job, (state, _) in health.items()} == expected:
                break
            await asyncio.sleep(0.1)
        log = (tmp_path / "prometheus.log").read_text()[-2000:]
        assert {job: state for job, (state, _) in health.items()} == expected, log
        assert "400 Bad Request" in health["plain"][1]  # Go's answer, not an empty reply
    finally:
        prometheus.terminate()
        await asyncio.wait_for(prometheus.wait(), 10)
        log_file.close()
        await server.stop()
