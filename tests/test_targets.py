"""Tests for ``bigbrotr.targets``: ``resolve_target`` and ``with_port``.

Error messages of bad targets (and factories) are tested through the CLI in
test_cli.py; here, what a good target gives.
"""

import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bigbrotr import process, runner
from bigbrotr.core.base_service import BaseServiceConfig
from bigbrotr.core.metrics import MetricsConfig
from bigbrotr.services.demo import DemoService
from bigbrotr.targets import resolve_target, with_port
from tests.support.services import UniqueName

SERVICE = """
from bigbrotr.core.base_service import BaseService, BaseServiceConfig


class Service(BaseService[BaseServiceConfig]):
    SERVICE_NAME = "beside"

    async def run(self) -> None:
        pass
"""


@pytest.fixture
def beside_the_yaml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unique_name: UniqueName
) -> Iterator[Callable[[], str]]:
    """Work in an empty directory that is not on sys.path; write a service module into it.

    Calling the fixture's value writes ``<name>.py`` and returns its module name;
    modules imported under those names are forgotten at teardown.
    """
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", os.getcwd())])
    names: list[str] = []

    def write() -> str:
        name = unique_name("beside")
        (tmp_path / f"{name}.py").write_text(SERVICE)
        names.append(name)
        return name

    yield write
    for module in [m for m in sys.modules if m.startswith(tuple(names))]:
        del sys.modules[module]


def test_a_bundled_name_gives_its_class_and_shipped_config() -> None:
    """``demo`` is the demo service, with the YAML file shipped beside it as default config."""
    target = resolve_target("demo")
    assert target.make is DemoService
    assert target.default_config is not None and target.default_config.name == "demo.yaml"
    assert "interval" in target.default_config.read_text()


def test_a_dotted_target_gives_its_class_and_no_default_config() -> None:
    """``package.module:ClassName`` imports the module and takes the class from it."""
    target = resolve_target("bigbrotr.services.demo:DemoService")
    assert (target.make, target.default_config) == (DemoService, None)


def test_a_module_in_the_current_directory_is_importable(
    beside_the_yaml: Callable[[], str],
) -> None:
    """As with ``python -m``, a module beside the YAML file works without installing it."""
    name = beside_the_yaml()
    target = resolve_target(f"{name}:Service")
    service = target.build(target.config_class())
    assert service.SERVICE_NAME == "beside"
    assert type(service).__module__ == name


def test_a_module_written_after_a_failed_attempt_is_found(
    beside_the_yaml: Callable[[], str],
) -> None:
    """The import caches are refreshed: a file written a moment ago is seen (tests, generators)."""
    name = beside_the_yaml()
    with pytest.raises(process.UsageError):
        resolve_target(f"{name}_later:Service")
    os.rename(f"{name}.py", f"{name}_later.py")
    later = resolve_target(f"{name}_later:Service")
    assert later.build(later.config_class()).SERVICE_NAME == "beside"


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (":DemoService", "must be 'package.module:ClassName' or a bundled service (demo)"),
        ("bigbrotr.services.demo:", "must be 'package.module:ClassName' or a bundled service"),
        ("my-service:Service", "cannot import module 'my-service': not a dotted module name"),
    ],
)
def test_a_malformed_target_is_a_usage_error_saying_what_is_expected(
    target: str, message: str
) -> None:
    """An empty part or a name Python cannot import is refused before importing anything."""
    with pytest.raises(process.UsageError, match=re.escape(message)):
        resolve_target(target)


def test_the_runner_raises_the_one_usage_error_type() -> None:
    """runner.UsageError is process.UsageError: the CLI catches one type, whoever raised it."""
    assert runner.UsageError is process.UsageError


class Batched(BaseServiceConfig):
    """A service's own settings."""

    batch_size: int = 10


def test_with_port_replaces_only_the_port() -> None:
    """The copy has the new port; every other field (the service's own too) is kept."""
    configured = 9100  # only a value to replace: nothing binds it
    config = Batched(batch_size=3, metrics=MetricsConfig(enabled=True, port=configured, path="/m"))
    moved = with_port(config, 0, Path("svc.yaml"))
    assert isinstance(moved, Batched)
    assert (moved.metrics.port, moved.metrics.path, moved.batch_size) == (0, "/m", 3)
    assert config.metrics.port == configured


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (Path("conf/svc.yaml"), "--port: metrics are off in conf/svc.yaml; set metrics.enabled"),
        (None, "--port: metrics are off; set metrics.enabled: true"),
    ],
)
def test_with_port_refuses_when_metrics_are_off(path: Path | None, message: str) -> None:
    """Nothing would serve the port: a usage error naming the file when there is one."""
    with pytest.raises(process.UsageError) as info:
        with_port(BaseServiceConfig(), 9100, path)
    assert str(info.value).startswith(message)
