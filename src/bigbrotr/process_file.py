"""A process file: several services in one ``bigbrotr run``, served by one endpoint.

``bigbrotr run --config jobs.yaml`` (no TARGET) with a file such as::

    metrics:            # the process's one endpoint: host, port, web config, Pushgateway
      enabled: true
      port: 9100
    services:
      fetch-eu:         # the service's name: its `service` label
        target: fetcher:Fetcher
        config: fetch-eu.yaml          # relative to this file
      fetch-us:
        target: fetcher:Fetcher        # one class, twice, with two configs
        config: {interval: 30, region: us}
      report:
        target: report:Report
        config: {schedule: "0 3 * * *", timezone: Europe/Berlin}

A service's own config keeps everything a service has (its schedule, limits,
its own fields), but the endpoint is the process's: what a service's
``metrics:`` says about it is refused, naming the process file's block,
except the one per-service setting, ``max_names``. Every mistake is one
``UsageError`` line naming the file and the field.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError

from bigbrotr.core.base_service import BaseService, BaseServiceConfig, named
from bigbrotr.core.config import CONFIG_DIRECTORY, Settings, describe_validation_error
from bigbrotr.core.metrics_config import MetricsConfig
from bigbrotr.core.yaml import ConfigFileError, KeyLines, load_yaml_with_lines
from bigbrotr.process import UsageError
from bigbrotr.targets import Target, resolve_target

__all__ = ["PER_SERVICE_METRICS", "Process", "is_process_file", "load_process"]

#: The ``metrics:`` settings a service of a process file may set for itself.
PER_SERVICE_METRICS = frozenset({"max_names"})
#: A service's name: its ``service`` label and its word in logs.
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")


class _Entry(Settings):
    target: str = Field(min_length=1)
    config: str | dict[str, Any] | None = None


class _ProcessFile(Settings):
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    services: dict[str, _Entry] = Field(min_length=1)


@dataclass(frozen=True)
class Process:
    """A checked process file: the endpoint, and each service's name, target and config.

    Attributes:
        source: The file.
        metrics: The one endpoint (the file's ``metrics:``).
        services: (name, target, config) for each service, in the file's order;
            each config's ``metrics`` is the process's, with its own ``max_names``.
    """

    source: Path
    metrics: MetricsConfig
    services: tuple[tuple[str, Target, BaseServiceConfig], ...]

    def with_port(self, port: int) -> Process:
        """This process with its endpoint on ``port`` (``run --port``).

        Raises:
            UsageError: If metrics are off in the file: nothing to serve.
        """
        if not self.metrics.enabled:
            raise UsageError(f"--port: metrics are off in {self.source}; set metrics.enabled: true")
        metrics = self.metrics.model_copy(update={"port": port})
        services = tuple(
            (
                name,
                target,
                config.model_copy(
                    update={"metrics": config.metrics.model_copy(update={"port": port})}
                ),
            )
            for name, target, config in self.services
        )
        return Process(self.source, metrics, services)

    def build(self) -> list[BaseService[BaseServiceConfig]]:
        """Build every service, each named as in the file.

        Raises:
            UsageError: As ``Target.build``, naming the service.
        """
        built = []
        for name, target, config in self.services:
            with named(name):
                try:
                    built.append(target.build(config))
                except UsageError as exc:
                    raise UsageError(f"{self.source}: service {name!r}: {exc}") from None
        return built


def is_process_file(path: Path) -> bool:
    """Whether ``path`` reads as a process file (with ``services:``); False if unreadable."""
    try:
        data, _ = load_yaml_with_lines(path)
    except (OSError, ConfigFileError):
        return False  # whoever reads it next says what is wrong
    return isinstance(data, dict) and "services" in data


def load_process(path: Path) -> Process:
    """Read and check a process file, and every service config it names.

    Raises:
        UsageError: For anything wrong, naming the file and the field.
    """
    data, lines = _read(path)
    if not (isinstance(data, dict) and "services" in data):
        raise UsageError(
            f"{path}: not a process file (it has no services:); give the service it"
            f" configures: bigbrotr run TARGET --config {path}"
        )
    directory = os.path.dirname(os.path.abspath(path))
    try:
        parsed = _ProcessFile.model_validate(data, context={CONFIG_DIRECTORY: directory})
    except ValidationError as exc:
        message = describe_validation_error(exc, model=_ProcessFile, lines=lines)
        raise UsageError(f"{path}: {message}") from None
    services = []
    for name, entry in parsed.services.items():
        where = f"{path}: field 'services.{name}"
        if not _NAME.fullmatch(name):
            raise UsageError(
                f"{where}': a service name is 1 to 64 letters, digits, '_', '-' or '.'"
            )
        try:
            target = resolve_target(entry.target)
        except UsageError as exc:
            raise UsageError(f"{where}.target': {exc}") from None
        config = _service_config(path, lines, name, entry.config, target)
        given = PER_SERVICE_METRICS & config.metrics.model_fields_set
        own = {key: getattr(config.metrics, key) for key in given}
        metrics = parsed.metrics.model_copy(update=own)  # the process's, and what is the service's
        services.append((name, target, config.model_copy(update={"metrics": metrics})))
    return Process(path, parsed.metrics, tuple(services))


def _read(path: Path) -> tuple[Any, KeyLines]:
    try:
        return load_yaml_with_lines(path)
    except FileNotFoundError:
        raise UsageError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise UsageError(f"config path is a directory, not a file: {path}") from None
    except OSError as exc:
        raise UsageError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except ConfigFileError as exc:
        raise UsageError(str(exc)) from None


def _service_config(
    process: Path, lines: KeyLines, name: str, given: str | dict[str, Any] | None, target: Target
) -> BaseServiceConfig:
    """One service's config: a file beside the process file, or inline, checked."""
    within: tuple[str, ...] = ("services", name, "config")
    source, directory = process, os.path.dirname(os.path.abspath(process))
    data: Any = given or {}
    if isinstance(given, str):
        source = process.parent / given
        data, lines = _read(source)
        directory, within = os.path.dirname(os.path.abspath(source)), ()
    endpoint = data.get("metrics") if isinstance(data, dict) else None
    for key in sorted(set(endpoint if isinstance(endpoint, dict) else ()) - PER_SERVICE_METRICS):
        field = ".".join((*within, "metrics", key))
        raise UsageError(
            f"{source}: field '{field}': one endpoint serves every service, so it is set in"
            f" the metrics: block of {process}; a service's own metrics: sets only"
            f" {', '.join(sorted(PER_SERVICE_METRICS))}"
        )
    config_class = target.config_class
    try:
        return config_class.model_validate(data, context={CONFIG_DIRECTORY: directory})
    except ValidationError as exc:
        message = describe_validation_error(exc, model=config_class, lines=lines, within=within)
        raise UsageError(f"{source}: {message}") from None
