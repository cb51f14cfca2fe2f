"""What ``bigbrotr run`` and ``check`` run: a bundled service, a class, or a factory.

``resolve_target`` imports the user's module (what goes wrong there is one
line naming file:line) and returns a ``Target``, which loads and checks the
config and builds the service. Every mistake is a ``UsageError``. Nothing here
imports aiohttp: ``bigbrotr check`` starts no server.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import os
import re
import socket
import sys
import traceback
import typing
from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import ValidationError

from bigbrotr.core.base_service import BaseService, BaseServiceConfig, load_config
from bigbrotr.core.config import describe_validation_error
from bigbrotr.core.metrics_config import MetricsConfig
from bigbrotr.core.web_config import load_web_config
from bigbrotr.core.yaml import ConfigFileError
from bigbrotr.process import UsageError

__all__ = ["BUNDLED_SERVICES", "Target", "check_endpoint", "resolve_target", "with_port"]

#: Bundled service name -> (import target, default YAML shipped beside it).
BUNDLED_SERVICES: dict[str, tuple[str, str]] = {
    "demo": ("bigbrotr.services.demo:DemoService", "demo.yaml"),
}


@dataclass(frozen=True)
class Target:
    """A resolved ``TARGET``: how to build the service, its config class and default file.

    Attributes:
        name: The target as ``module:attribute``, for messages.
        make: The service class, or a factory taking the loaded config.
        config_class: What the config file is validated against.
        default_config: The file used without ``--config`` (bundled services).
    """

    name: str
    make: Callable[[BaseServiceConfig], BaseService[BaseServiceConfig]]
    config_class: type[BaseServiceConfig]
    default_config: Path | None

    def load_config(self, path: Path | None) -> BaseServiceConfig:
        """Validate ``path`` (or the default file, or the class defaults).

        Raises:
            UsageError: If the file is missing or invalid.
        """
        config_class = self.config_class
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
                f"{config_class.__name__} defaults: {describe_validation_error(exc)} "
                "(pass --config FILE)"
            ) from None

    def check_host(self, config: BaseServiceConfig, path: Path | None) -> None:
        """Resolve ``metrics.host`` as ``run`` would bind it (when metrics are on).

        Raises:
            UsageError: If the name does not resolve; the message names the
                config file (``path``, else the default one).
        """
        _check_host(config.metrics, path or self.default_config)

    def check_web_config(self, config: BaseServiceConfig) -> None:
        """Read ``metrics.web_config_file`` as ``run`` would (certificates, hashes, keys).

        Raises:
            UsageError: If it is missing or wrong, naming the file and the key.
        """
        _check_web_config(config.metrics)

    def build(self, config: BaseServiceConfig) -> BaseService[BaseServiceConfig]:
        """Build the service with ``config`` (the class, or the factory).

        Raises:
            UsageError: If the class cannot be built from a config alone (its
                ``__init__`` takes dependencies: give a factory instead), or
                the factory fails or returns something else than a service.
        """
        what = self.name.rpartition(":")[2]
        try:
            service = self.make(config)
        except TypeError as exc:  # a call that does not fit; anything else is the service's
            hint = ""
            if isinstance(self.make, type) and "required" in str(exc):
                hint = " (it takes dependencies: give a factory, module:function, that builds it)"
            raise UsageError(f"cannot build {what}: {exc}{hint}") from None
        if not isinstance(service, BaseService):
            raise UsageError(
                f"factory {self.name!r} returned {type(service).__name__}, not a BaseService"
            )
        return service


def check_endpoint(metrics: MetricsConfig, source: Path | None) -> None:
    """What ``run`` would find wrong with the endpoint: its host, its web config file.

    Raises:
        UsageError: Naming ``source`` (the file ``metrics:`` is in) or the web config.
    """
    _check_host(metrics, source)
    _check_web_config(metrics)


def _check_host(metrics: MetricsConfig, source: Path | None) -> None:
    if not metrics.enabled:
        return
    try:
        socket.getaddrinfo(metrics.host, metrics.port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        where = f"{source}: " if source else ""
        raise UsageError(
            f"{where}field 'metrics.host': cannot resolve {metrics.host!r}: {reason}"
        ) from None


def _check_web_config(metrics: MetricsConfig) -> None:
    path = metrics.web_config_file
    if not metrics.enabled or path is None:
        return
    try:
        load_web_config(path)
    except FileNotFoundError:
        raise UsageError(f"web config file not found: {path}") from None
    except ConfigFileError as exc:
        raise UsageError(str(exc)) from None


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
    """Turn ``module:ClassName``, ``module:factory`` or a bundled name into a ``Target``.

    The current directory is importable, as with ``python -m``, so a service
    module beside its YAML file works without installing it. A factory is a
    function that takes the loaded config and returns the service (as
    uvicorn's ``--factory``), for a service whose ``__init__`` takes
    dependencies; the config class comes from its parameter's annotation,
    else from its return annotation's ``CONFIG_CLASS``.

    Raises:
        UsageError: If the target is malformed, cannot be imported, or is
            neither a ``BaseService`` subclass nor a function.
    """
    default_config: Path | None = None
    if target in BUNDLED_SERVICES:
        target, resource = BUNDLED_SERVICES[target]
        default_config = Path(str(files("bigbrotr.services") / resource))
    module_name, sep, class_name = target.partition(":")
    if not sep or not module_name or not class_name:
        bundled = ", ".join(sorted(BUNDLED_SERVICES))
        raise UsageError(
            f"target {target!r} must be 'package.module:ClassName' or a bundled service "
            f"({bundled}); a factory is 'package.module:function'"
        )
    if module_name.endswith(".py"):
        dotted = module_name.removesuffix(".py").replace("/", ".").lstrip(".")
        raise UsageError(f"target {target!r} names a file; use {dotted}:{class_name}")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module = _import(module_name)
    found = getattr(module, class_name, None)
    if found is None:
        raise UsageError(f"module {module_name!r} has no class {class_name!r} (nor a factory)")
    if isinstance(found, type) and issubclass(found, BaseService):
        return Target(target, found, found.CONFIG_CLASS, default_config)
    if inspect.iscoroutinefunction(found):
        raise UsageError(f"factory {target!r} is async: make it a plain function")
    if inspect.isroutine(found):
        return Target(target, found, _factory_config_class(found, target), default_config)
    raise UsageError(f"{target!r} is not a BaseService subclass, nor a factory function")


def _factory_config_class(factory: Callable[..., Any], target: str) -> type[BaseServiceConfig]:
    """The config class a factory takes: its first parameter's type, else its service's.

    Raises:
        UsageError: If the annotations cannot be read, or name neither.
    """
    try:
        hints = typing.get_type_hints(factory)
    except Exception as exc:
        raise UsageError(f"factory {target!r}: cannot read its annotations: {exc}") from None
    parameters = list(inspect.signature(factory).parameters)
    returned = hints.get("return")
    candidates = [
        hints.get(parameters[0]) if parameters else None,
        returned.CONFIG_CLASS
        if isinstance(returned, type) and issubclass(returned, BaseService)
        else None,
    ]
    found = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseServiceConfig)]
    if found:  # the most specific: `config: BaseServiceConfig` -> MyService uses MyConfig
        return max(found, key=lambda config_class: len(config_class.__mro__))
    raise UsageError(
        f"{target!r} is not a BaseService subclass; as a factory, annotate its config "
        "parameter (config: MyConfig) or its return type (-> MyService)"
    )


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
