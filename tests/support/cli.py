"""The real CLI in a subprocess, for the end-to-end tests (``tests/e2e``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: Where the e2e services live; the ``start_cli`` fixture runs the CLI from there.
SERVICES_DIR = Path(__file__).parent.parent / "e2e" / "services"
#: The e2e service (``tests/e2e/services/e2e_service.py``), as ``bigbrotr run`` names it.
TARGET = "e2e_service:E2EService"

#: The ``wait_until`` fixture: ``wait_until(predicate, timeout=15, what="condition")``.
WaitUntil = Callable[..., Any]
#: The ``scrape`` fixture: ``scrape(url)``, the metrics text.
Scrape = Callable[[str], str]


def wait_until(predicate: Callable[[], Any], timeout: float = 15, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class CLI:
    """A running ``python -m bigbrotr`` process with its stderr in a file.

    Started by the ``start_cli`` fixture, which kills what is left at teardown.
    """

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
