"""Helpers for running the real CLI in a subprocess and scraping it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

SERVICES_DIR = Path(__file__).parent / "services"
TARGET = "e2e_service:E2EService"


def wait_until(predicate: Callable[[], Any], timeout: float = 15, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class CLI:
    """A running ``python -m bigbrotr`` process with its stderr in a file."""

    def __init__(self, args: list[str], cwd: Path, log_path: Path, env: dict[str, str]) -> None:
        self.log_path = log_path
        self._log_file = log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bigbrotr", *args],
            cwd=cwd,
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=self._log_file,
        )

    def stderr(self) -> str:
        return self.log_path.read_text()

    def json_lines(self) -> list[dict[str, Any]]:
        lines = []
        for line in self.stderr().splitlines():
            if line.startswith("{"):
                lines.append(json.loads(line))
        return lines

    def logged(self, event: str) -> list[dict[str, Any]]:
        return [line for line in self.json_lines() if line.get("event") == event]

    def metrics_url(self) -> str:
        lines = wait_until(lambda: self.logged("serving metrics"), what="metrics url")
        url: str = lines[0]["url"]
        return url

    def signal(self, sig: signal.Signals = signal.SIGTERM) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 15) -> int:
        code = self.proc.wait(timeout)
        self._log_file.close()
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log_file.close()
        if self.proc.stdout:
            self.proc.stdout.close()


@pytest.fixture
def start_cli(tmp_path: Path) -> Iterator[Callable[..., CLI]]:
    """Start the CLI; a ``config`` dict is written to YAML and passed with --config."""
    started: list[CLI] = []

    def start(
        *args: str,
        config: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
        cwd: Path = SERVICES_DIR,
    ) -> CLI:
        argv = list(args)
        if config is not None:
            path = tmp_path / f"config-{len(started)}.yaml"
            path.write_text(yaml.safe_dump(config))
            argv += ["--config", str(path)]
        cli = CLI(argv, cwd, tmp_path / f"stderr-{len(started)}.log", env or {})
        started.append(cli)
        return cli

    yield start
    for cli in started:
        cli.close()


def scrape(url: str) -> str:
    """GET the metrics text."""
    with urllib.request.urlopen(url, timeout=5) as response:
        body: bytes = response.read()
    return body.decode()


def sample(text: str, sample_name: str, **labels: str) -> float | None:
    """Find one sample's value in exposition text."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == sample_name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None
