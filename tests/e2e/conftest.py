"""Fixtures for running the real CLI in a subprocess, waiting on it and scraping it."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import cli as support
from tests.support.cli import CLI, SERVICES_DIR, Scrape, WaitUntil


@pytest.fixture(scope="session")
def wait_until() -> WaitUntil:
    """Poll a predicate until it returns something truthy (or fail after ``timeout`` seconds)."""
    return support.wait_until


@pytest.fixture(scope="session")
def scrape() -> Scrape:
    """GET a metrics URL and return the text."""

    def get(url: str) -> str:
        with urllib.request.urlopen(url, timeout=5) as response:
            body: bytes = response.read()
        return body.decode()

    return get


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
