"""Two demo instances, a real Prometheus and the exported kit, end to end.

Prometheus finds the instances through the exported ``file_sd`` file, scrapes
them with the exported scrape config and evaluates the exported rules; one
instance is then restarted failing every cycle, and its alert fires.
"""

import json
import socket
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import CLI, WaitUntil

StartCLI = Callable[..., CLI]


def export(*args: str) -> str:
    """What ``bigbrotr export ...`` prints."""
    done = subprocess.run(
        [sys.executable, "-m", "bigbrotr", "export", *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def demo(start_cli: StartCLI, port: int = 0, **fields: Any) -> tuple[CLI, str]:
    """A demo instance (quick cycles, no failures unless told); its ``host:port``."""
    config = {
        "interval": 0.5,
        "failure_rate": 0.0,
        "work_seconds_max": 0.05,
        "metrics": {"enabled": True, "port": port},
        **fields,
    }
    cli = start_cli("run", "demo", "--log-format", "json", config=config)
    target = cli.metrics_url().removeprefix("http://").removesuffix("/metrics")
    return cli, target


class Prometheus:
    """The HTTP API of a running Prometheus."""

    def __init__(self, port: int) -> None:
        self.api = f"http://127.0.0.1:{port}/api/v1"

    def get(self, path: str, **params: str) -> Any:
        url = f"{self.api}/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.load(response)["data"]
        except OSError:  # not listening yet
            return None

    def query(self, promql: str) -> dict[str, float]:
        """Instance -> value of an instant query."""
        data = self.get("query", query=promql) or {"result": []}
        return {r["metric"]["instance"]: float(r["value"][1]) for r in data["result"]}

    def health(self) -> dict[str, str]:
        """Instance -> target health, for the job ``bigbrotr``."""
        data = self.get("targets") or {"activeTargets": []}
        return {
            t["labels"]["instance"]: t["health"]
            for t in data["activeTargets"]
            if t["labels"]["job"] == "bigbrotr"
        }


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[[list[str]], Prometheus]]:
    """Start Prometheus on the exported config, rules and file_sd for the given targets."""
    started: list[subprocess.Popen[bytes]] = []

    def start(targets: list[str]) -> Prometheus:
        (tmp_path / "bigbrotr.rules.yml").write_text(export("rules"))
        sd = ["file-sd", "--label", "env=e2e"] + [a for t in targets for a in ("--target", t)]
        (tmp_path / "bigbrotr-targets.json").write_text(export(*sd))
        (tmp_path / "prometheus.yml").write_text(
            export(
                "scrape-config",
                "--file-sd", "bigbrotr-targets.json",
                "--rules", "bigbrotr.rules.yml",
                "--scrape-interval", "500ms",
            )
        )  # fmt: skip
        with socket.socket() as sock:  # a free port for Prometheus' own API
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        log = (tmp_path / "prometheus.log").open("wb")
        started.append(
            subprocess.Popen(
                [
                    "prometheus",
                    "--config.file=prometheus.yml",
                    f"--storage.tsdb.path={tmp_path / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                cwd=tmp_path,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        )
        log.close()
        return Prometheus(port)

    yield start
    for process in started:
        process.terminate()
        process.wait(10)


def test_prometheus_scrapes_two_demos_and_alerts_on_the_failing_one(
    wait_until: WaitUntil, start_cli: StartCLI, prometheus: Callable[[list[str]], Prometheus]
) -> None:
    """Both targets up via file_sd, cycles_success rising for both, then a streak alert."""
    first, a = demo(start_cli)
    second, b = demo(start_cli)
    prom = prometheus([a, b])

    up = wait_until(lambda: prom.health() == {a: "up", b: "up"}, timeout=20, what="targets up")
    assert up
    success = 'service_counter_total{job="bigbrotr", service="demo", name="cycles_success"}'
    seen = wait_until(lambda: len(prom.query(success)) == 2 and prom.query(success), what="both")
    wait_until(
        lambda: all(prom.query(success).get(t, 0) > seen[t] for t in (a, b)),
        what="cycles_success rising on both instances",
    )
    labelled = prom.query('service_counter_total{env="e2e", name="cycles_success"}')
    assert set(labelled) == {a, b}  # the file_sd file's label reached every series

    # The second instance comes back failing every cycle: one short of its limit, it alerts.
    second.signal()
    assert second.wait() == 0
    failing, _ = demo(
        start_cli, port=int(b.rsplit(":", 1)[1]), interval=2.0, failure_rate=1.0,
        max_consecutive_failures=5,
    )  # fmt: skip
    alert = 'ALERTS{alertname="BigbrotrFailureStreakNearLimit", alertstate="firing"}'
    fired = f"max_over_time({alert}[1m])"  # it fires briefly: the streak then hits the limit
    assert wait_until(lambda: b in prom.query(fired), timeout=30, what="the streak alert")
    assert a not in prom.query(fired)
    labels = prom.get("query", query=fired)["result"][0]["metric"]
    assert (labels["service"], labels["severity"], labels["env"]) == ("demo", "warning", "e2e")
    assert failing.wait(20) == 1  # and at the limit it stops itself, exit 1
    assert first.proc.poll() is None
