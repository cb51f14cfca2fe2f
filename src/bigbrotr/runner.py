"""Process wiring: find the service, load its config, start, handle signals, stop.

Everything a user can get wrong (a bad target, a missing or invalid file, a
port in use) is raised as ``UsageError`` with a one-line message, which the CLI
prints and turns into exit code 2.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import importlib
import importlib.util
import os
import re
import signal
import socket
import sys
import time
import traceback
import urllib.request
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from types import ModuleType

from prometheus_client import REGISTRY, push_to_gateway
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from bigbrotr.core.async_collectors import refresh as refresh_async_collectors
from bigbrotr.core.base_service import BaseService, BaseServiceConfig, load_config
from bigbrotr.core.config import describe_validation_error, masked
from bigbrotr.core.logger import get_logger
from bigbrotr.core.metrics_config import PushgatewayConfig
from bigbrotr.core.server import MetricsServer
from bigbrotr.core.web_config import load_web_config
from bigbrotr.core.yaml import ConfigFileError
from bigbrotr.process import EXIT_FAILED, EXIT_OK, ShutdownSignals, UsageError

__all__ = [
    "BUNDLED_SERVICES",
    "Target",
    "UsageError",
    "resolve_target",
    "serve",
    "with_port",
]


#: Bundled service name -> (import target, default YAML shipped beside it).
BUNDLED_SERVICES: dict[str, tuple[str, str]] = {
    "demo": ("bigbrotr.services.demo:DemoService", "demo.yaml"),
}

_log = get_logger(__name__)


@dataclass(frozen=True)
class Target:
    """A resolved ``TARGET``: the service class and its default config file."""

    service_class: type[BaseService[BaseServiceConfig]]
    default_config: Path | None

    def load_config(self, path: Path | None) -> BaseServiceConfig:
        """Validate ``path`` (or the default file, or the class defaults).

        Raises:
            UsageError: If the file is missing or invalid.
        """
        config_class = self.service_class.CONFIG_CLASS
        path = path or self.default_config
        try:
            if path is None:
                return config_class()
            return load_config(config_class, path)
        except FileNotFoundError:
            raise UsageError(f"config file not found: {path}") from None
        except IsADirectoryError:
            raise UsageError(f"config path is a directory, not a file: {path}") from None
        except OSError as exc:
            raise UsageError(f"cannot read config file {path}: {exc.strerror or exc}") from None
        except ConfigFileError as exc:
            raise UsageError(str(exc)) from None
        except ValidationError as exc:
            raise UsageError(
                f"{self.service_class.__name__} defaults: {describe_validation_error(exc)} "
                "(pass --config FILE)"
            ) from None

    def check_host(self, config: BaseServiceConfig, path: Path | None) -> None:
        """Resolve ``metrics.host`` as ``run`` would bind it (when metrics are on).

        Raises:
            UsageError: If the name does not resolve; the message names the
                config file (``path``, else the default one).
        """
        metrics = config.metrics
        if not metrics.enabled:
            return
        try:
            socket.getaddrinfo(metrics.host, metrics.port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            source = path or self.default_config
            where = f"{source}: " if source else ""
            raise UsageError(
                f"{where}field 'metrics.host': cannot resolve {metrics.host!r}: {reason}"
            ) from None

    def check_web_config(self, config: BaseServiceConfig) -> None:
        """Read ``metrics.web_config_file`` as ``run`` would (certificates, hashes, keys).

        Raises:
            UsageError: If it is missing or wrong, naming the file and the key.
        """
        path = config.metrics.web_config_file
        if not config.metrics.enabled or path is None:
            return
        try:
            load_web_config(path)
        except FileNotFoundError:
            raise UsageError(f"web config file not found: {path}") from None
        except ConfigFileError as exc:
            raise UsageError(str(exc)) from None

    def build(self, config: BaseServiceConfig) -> BaseService[BaseServiceConfig]:
        """Instantiate the service with ``config``.

        Raises:
            UsageError: If the class cannot be built from a config alone.
        """
        try:
            return self.service_class(config)
        except TypeError as exc:
            raise UsageError(f"cannot build {self.service_class.__name__}: {exc}") from None


def with_port(config: BaseServiceConfig, port: int, path: Path | None) -> BaseServiceConfig:
    """``config`` with ``metrics.port`` replaced (``run --port``).

    Raises:
        UsageError: If metrics are off in the config, so there is nothing to serve.
    """
    if not config.metrics.enabled:
        where = f" in {path}" if path else ""
        raise UsageError(f"--port: metrics are off{where}; set metrics.enabled: true")
    metrics = config.metrics.model_copy(update={"port": port})
    return config.model_copy(update={"metrics": metrics})


def resolve_target(target: str) -> Target:
    """Turn ``package.module:ClassName`` or a bundled name into a ``Target``.

    The current directory is importable, as with ``python -m``, so a service
    module beside its YAML file works without installing it.

    Raises:
        UsageError: If the target is malformed, cannot be imported, or is not
            a ``BaseService`` subclass.
    """
    default_config: Path | None = None
    if target in BUNDLED_SERVICES:
        target, resource = BUNDLED_SERVICES[target]
        default_config = Path(str(files("bigbrotr.services") / resource))
    module_name, sep, class_name = target.partition(":")
    if not sep or not module_name or not class_name:
        bundled = ", ".join(sorted(BUNDLED_SERVICES))
        raise UsageError(
            f"target {target!r} must be 'package.module:ClassName' or a bundled service ({bundled})"
        )
    if module_name.endswith(".py"):
        dotted = module_name.removesuffix(".py").replace("/", ".").lstrip(".")
        raise UsageError(f"target {target!r} names a file; use {dotted}:{class_name}")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module = _import(module_name)
    cls = getattr(module, class_name, None)
    if cls is None:
        raise UsageError(f"module {module_name!r} has no class {class_name!r}")
    if not (isinstance(cls, type) and issubclass(cls, BaseService)):
        raise UsageError(f"{target!r} is not a BaseService subclass")
    return Target(cls, default_config)


_MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def _import(module_name: str) -> ModuleType:
    """Import the user's module; what goes wrong in it is one line naming the place.

    Raises:
        UsageError: For a malformed or missing module, or one that fails while
            importing (file:line of the failure, and the error).
    """
    if not _MODULE_NAME.fullmatch(module_name):
        raise UsageError(f"cannot import module {module_name!r}: not a dotted module name")
    importlib.invalidate_caches()  # a file written a moment ago (tests, generators) is found
    try:
        return importlib.import_module(module_name)
    except SyntaxError as exc:  # the file and line the user has to fix
        where = f"{exc.filename}:{exc.lineno}" if exc.filename else module_name
        raise UsageError(f"cannot import {module_name!r}: {where}: {exc.msg}") from None
    except ModuleNotFoundError as exc:
        if exc.name == module_name or module_name.startswith(f"{exc.name}."):  # the target
            raise UsageError(f"cannot import module {module_name!r}: {exc}") from None
        raise UsageError(
            f"cannot import {module_name!r}: {_place(exc, module_name)}{exc}"
        ) from None
    except Exception as exc:  # the module itself raised while importing
        where = _place(exc, module_name)
        raise UsageError(
            f"cannot import {module_name!r}: {where}{type(exc).__name__}: {exc}"
        ) from None


def _place(error: BaseException, module_name: str) -> str:
    """``file:line: `` of the module's own line that led to ``error`` (else where it was raised)."""
    frames = [
        frame
        for frame in traceback.extract_tb(error.__traceback__)
        if not frame.filename.startswith("<frozen importlib")
    ]
    with contextlib.suppress(Exception):  # the spec is a nicety; the error is the point
        spec = importlib.util.find_spec(module_name)
        own = [frame for frame in frames if spec is not None and frame.filename == spec.origin]
        frames = own or frames
    return f"{frames[-1].filename}:{frames[-1].lineno}: " if frames else ""


async def serve(
    service: BaseService[BaseServiceConfig], signals: ShutdownSignals, *, once: bool = False
) -> int:
    """Run ``service`` until it stops, and return the process exit code.

    Continuous mode starts the metrics server (when enabled) and runs
    ``run_forever()``; ``once`` runs a single cycle without serving. The
    resolved config is logged once, when the service starts.

    Raises:
        UsageError: If the metrics port cannot be bound.
    """
    signals.attach(service)
    try:
        if once:
            _log_start(service, once)
            async with service:
                if not service.is_running:  # a signal came during start-up
                    _log.info("stopped before the cycle", reason="shutdown requested")
                    return EXIT_OK
                return await _once(service, signals)
        server = MetricsServer(service.config.metrics, health=service.health, status=service.status)
        try:
            await server.start()
        except ConfigFileError as exc:
            raise UsageError(str(exc)) from None
        except FileNotFoundError as exc:
            raise UsageError(f"web config file not found: {exc.filename}") from None
        except OSError as exc:
            hint = " (--port picks another)" if exc.errno == errno.EADDRINUSE else ""
            raise UsageError(f"{exc.strerror or exc}{hint}") from None
        loop = asyncio.get_running_loop()
        reloads = server.url is not None and service.config.metrics.web_config_file is not None
        reloading: set[asyncio.Task[bool]] = set()  # held, so a reload is not collected

        def reload() -> None:
            task = loop.create_task(server.reload_web_config())
            reloading.add(task)
            task.add_done_callback(reloading.discard)

        if reloads:  # certificates and users rotate without a restart
            loop.add_signal_handler(signal.SIGHUP, reload)
        try:
            _log_start(service, once)
            if server.url:
                path = service.config.metrics.path
                base = server.url.removesuffix(path)
                pages = {"status_page": f"{base}/"} if path != "/" else {}  # "/" is the metrics
                _log.info("serving metrics", url=server.url, **pages, readyz=f"{base}/readyz")
            async with service:
                failed = await service.run_forever()
        finally:
            if reloads:
                loop.remove_signal_handler(signal.SIGHUP)
            await server.stop()
        _log.info("stopped", reason="failure limit" if failed else "shutdown requested")
        return EXIT_FAILED if failed else EXIT_OK
    finally:
        signals.detach()


async def _once(service: BaseService[BaseServiceConfig], signals: ShutdownSignals) -> int:
    """One cycle, then the push to the Pushgateway (if configured) and one completion line.

    A failed push turns exit 0 into 1 but never hides the cycle's own result.
    """
    started = time.monotonic()
    succeeded = await service.run_cycle()
    duration = time.monotonic() - started
    service.set_gauge("run_duration_seconds", duration)
    gateway = service.config.metrics.pushgateway
    if succeeded:
        service.set_gauge("last_success_timestamp", time.time())
    elif gateway is not None and (previous := await _previous_success(gateway, service)):
        service.set_gauge("last_success_timestamp", previous)  # the PUT would erase it
    pushed = await _push(gateway)
    # a signal stops cleanly (exit 0), even a cycle it cut short after the grace
    code = EXIT_OK if succeeded or signals.received else EXIT_FAILED
    if pushed is False and code == EXIT_OK:
        code = EXIT_FAILED
    _log.info(
        "once done",
        outcome="success" if succeeded else "failure",
        duration_seconds=round(duration, 3),
        pushed=pushed,
    )
    return code


async def _previous_success(
    gateway: PushgatewayConfig, service: BaseService[BaseServiceConfig]
) -> float | None:
    """The last success the Pushgateway holds for this group, or None.

    A push replaces the whole group, so a failed run would otherwise erase the
    time of the last success, and a "no success for a day" alert would go
    silent exactly when it should fire. When it cannot be read, the push goes
    on without it and a WARNING says so.
    """
    wanted = {
        "job": gateway.job,
        **gateway.grouping_key,
        "service": service.SERVICE_NAME,
        "name": "last_success_timestamp",
    }
    try:
        return await asyncio.to_thread(_find_on_gateway, gateway, wanted)
    except Exception as exc:  # unreachable, or not metrics (a proxy's page): push anyway
        _log.warning(
            "could not read the last success from the Pushgateway",
            url=gateway.url,
            reason=f"{type(exc).__name__}: {exc}",
        )
    return None


def _find_on_gateway(gateway: PushgatewayConfig, wanted: dict[str, str]) -> float | None:
    """The value of the ``service_gauge`` series with exactly these labels on the gateway."""
    url = f"{gateway.url.rstrip('/')}/metrics"
    with urllib.request.urlopen(url, timeout=gateway.timeout) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = dict(sample.labels)
            if labels.get("instance") == "" and "instance" not in wanted:
                del labels["instance"]  # the Pushgateway adds an empty one
            if sample.name == "service_gauge" and labels == wanted:
                return float(sample.value)
    return None


async def _push(gateway: PushgatewayConfig | None) -> bool | None:
    """Push the default registry; None when there is no Pushgateway, else whether it worked."""
    if gateway is None:
        return None
    # Values fetched at scrape time are fetched for the push too (failures are logged).
    await refresh_async_collectors(REGISTRY, gateway.timeout / 2)
    try:
        await asyncio.to_thread(
            push_to_gateway,
            gateway.url,
            job=gateway.job,
            registry=REGISTRY,
            grouping_key=gateway.grouping_key,
            timeout=gateway.timeout,
        )
    except Exception as exc:  # any failure of the push is reported, never raised
        _log.error(
            "push to the Pushgateway failed", url=gateway.url, reason=f"{type(exc).__name__}: {exc}"
        )
        return False
    return True


def _log_start(service: BaseService[BaseServiceConfig], once: bool) -> None:
    service_class = type(service)
    _log.info(
        "starting",
        target=f"{service_class.__module__}:{service_class.__qualname__}",
        once=once,
        config=masked(service.config),
    )
