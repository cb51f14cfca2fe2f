"""Process wiring: run a built service forever or once, on a loop of its own, and stop.

``run`` owns the event loop of ``bigbrotr run`` (as uvicorn's ``Server.run``
wraps ``serve``); ``serve_forever`` and ``serve_once`` are the two ways a
service runs under it. What a user can get wrong (a port in use, a bad web
config) is raised as ``UsageError`` with a one-line message, which the CLI
prints and turns into exit code 2. Finding and building the service is
``bigbrotr.targets``' job (re-exported here).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bigbrotr import pushgateway
from bigbrotr.core.base_service import BaseService, BaseServiceConfig
from bigbrotr.core.config import masked
from bigbrotr.core.exposition import Healths, Statuses
from bigbrotr.core.logger import get_logger
from bigbrotr.core.metrics_config import MetricsConfig
from bigbrotr.core.server import MetricsServer
from bigbrotr.core.service_group import ServiceGroup
from bigbrotr.core.yaml import ConfigFileError
from bigbrotr.process import EXIT_FAILED, EXIT_OK, ShutdownSignals, UsageError
from bigbrotr.pushgateway import ServiceView
from bigbrotr.targets import BUNDLED_SERVICES, Target, resolve_target, with_port

__all__ = [
    "BUNDLED_SERVICES",
    "Target",
    "UsageError",
    "resolve_target",
    "run",
    "run_group",
    "serve",
    "serve_forever",
    "serve_group_forever",
    "serve_group_once",
    "serve_once",
    "with_port",
]

_log = get_logger(__name__)


#: Names the threads of ``asyncio.to_thread`` under ``bigbrotr run``.
_TO_THREAD = "bigbrotr-to-thread"


def run(service: BaseService[BaseServiceConfig], signals: ShutdownSignals, *, once: bool) -> int:
    """Run ``service`` on an event loop of its own, forever or once; the exit code.

    As ``asyncio.run``, but executor threads are not waited for: a cycle cut
    off after ``shutdown_grace`` may have left a thread of
    ``asyncio.to_thread`` running, and the process must still exit in time.

    Raises:
        UsageError: If the metrics endpoint cannot start (port, web config).
    """
    return _on_own_loop(serve_once(service, signals) if once else serve_forever(service, signals))


def run_group(
    group: ServiceGroup, metrics: MetricsConfig, signals: ShutdownSignals, *, once: bool
) -> int:
    """``run`` for several services of one process, with one endpoint (``metrics``).

    Raises:
        UsageError: If the metrics endpoint cannot start (port, web config).
    """
    if once:
        return _on_own_loop(serve_group_once(group, metrics, signals))
    return _on_own_loop(serve_group_forever(group, metrics, signals))


def _on_own_loop(main: Coroutine[Any, Any, int]) -> int:
    loop = asyncio.new_event_loop()
    threads = ThreadPoolExecutor(thread_name_prefix=_TO_THREAD)  # asyncio.to_thread's
    loop.set_default_executor(threads)
    try:
        code = loop.run_until_complete(main)
    finally:
        threads.shutdown(wait=False)
        if tasks := asyncio.all_tasks(loop):
            for task in tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
    _leave_stuck_threads(code)
    return code


def _leave_stuck_threads(code: int) -> None:
    """Exit now if a thread of ``asyncio.to_thread`` would hold the exit.

    Python waits for such threads at exit, however long they take. They get
    half a second, then the process exits with ``code`` without them (and
    without ``atexit`` handlers: the one way out of a thread that will not
    end). Threads the service started itself are left to Python's usual exit.
    """
    deadline = time.monotonic() + 0.5
    stuck = [thread for thread in threading.enumerate() if thread.name.startswith(_TO_THREAD)]
    for thread in stuck:
        thread.join(max(0.0, deadline - time.monotonic()))
    if any(thread.is_alive() for thread in stuck):
        names = ", ".join(thread.name for thread in stuck if thread.is_alive())
        _log.warning("exiting without waiting for stuck threads", threads=names)
        logging.shutdown()
        os._exit(code)


async def serve(
    service: BaseService[BaseServiceConfig], signals: ShutdownSignals, *, once: bool = False
) -> int:
    """``serve_once`` or ``serve_forever`` (kept for callers of the earlier single entry)."""
    return await (serve_once if once else serve_forever)(service, signals)


async def serve_forever(service: BaseService[BaseServiceConfig], signals: ShutdownSignals) -> int:
    """Serve the metrics (when enabled) and run cycles until a signal or the failure limit.

    SIGHUP re-reads ``metrics.web_config_file`` while it runs.

    Returns:
        ``EXIT_FAILED`` if the failure limit stopped it, else ``EXIT_OK``.

    Raises:
        UsageError: If the metrics endpoint cannot start (port, web config).
    """
    signals.attach(service)
    try:
        async with _serving(service.config.metrics, service.health, service.status, signals) as url:
            _log_start(service, once=False)
            _log_serving(url, service.config.metrics)
            async with service:
                failed = await service.run_forever()
        _log.info("stopped", reason="failure limit" if failed else "shutdown requested")
        return EXIT_FAILED if failed else EXIT_OK
    finally:
        signals.detach()


async def serve_group_forever(
    group: ServiceGroup, metrics: MetricsConfig, signals: ShutdownSignals
) -> int:
    """``serve_forever`` for several services: one endpoint, each on its schedule.

    A service that reaches its failure limit stops them all (the others get
    their ``shutdown_grace``), and the process exits 1 with a line naming it.

    Returns:
        ``EXIT_FAILED`` if a service's failure limit stopped them, else ``EXIT_OK``.

    Raises:
        UsageError: If the metrics endpoint cannot start (port, web config).
    """
    signals.attach(group)
    try:
        async with _serving(metrics, group.health, group.status, signals) as url:
            for service in group.services:
                _log_start(service, once=False)
            _log_serving(url, metrics)
            async with group:
                stopped_by = await group.run_forever()
        if stopped_by is not None:
            _log.error("stopped", reason="failure limit", service=stopped_by.SERVICE_NAME)
            return EXIT_FAILED
        _log.info("stopped", reason="shutdown requested")
        return EXIT_OK
    finally:
        signals.detach()


@contextlib.asynccontextmanager
async def _serving(
    metrics: MetricsConfig,
    health: Callable[[], Healths],
    status: Callable[[], Statuses],
    signals: ShutdownSignals,
) -> AsyncIterator[str | None]:
    """The endpoint (when enabled) while the block runs, its URL; SIGHUP re-reads its web config."""
    server = MetricsServer(metrics, health=health, status=status)
    await _start(server)
    try:
        if server.url is not None and metrics.web_config_file is not None:
            signals.on_reload(server.request_reload)  # certificates and users rotate live
        yield server.url
    finally:
        signals.on_reload(None)
        await server.stop()


def _log_serving(url: str | None, metrics: MetricsConfig) -> None:
    if url:
        base = url.removesuffix(metrics.path)
        pages = {"status_page": f"{base}/"} if metrics.path != "/" else {}  # "/": the metrics
        _log.info("serving metrics", url=url, **pages, readyz=f"{base}/readyz")


async def _start(server: MetricsServer) -> None:
    """Start the metrics server; what the user got wrong is a ``UsageError``."""
    try:
        await server.start()
    except ConfigFileError as exc:
        raise UsageError(str(exc)) from None
    except FileNotFoundError as exc:
        raise UsageError(f"web config file not found: {exc.filename}") from None
    except OSError as exc:
        hint = " (--port picks another)" if exc.errno == errno.EADDRINUSE else ""
        raise UsageError(f"{exc.strerror or exc}{hint}") from None


async def serve_once(service: BaseService[BaseServiceConfig], signals: ShutdownSignals) -> int:
    """One cycle without serving, then the push (if configured) and one completion line.

    A failed push turns exit 0 into 1 but never hides the cycle's own result; a
    signal stops cleanly (exit 0), even a cycle it cut short after the grace.
    """
    signals.attach(service)
    try:
        _log_start(service, once=True)
        async with service:
            if not service.is_running:  # a signal came during start-up
                _log.info("stopped before the cycle", reason="shutdown requested")
                return EXIT_OK
            succeeded, pushed = await _once(service, service.config.metrics.pushgateway)
        code = EXIT_OK if succeeded or signals.received else EXIT_FAILED
        return EXIT_FAILED if pushed is False and code == EXIT_OK else code
    finally:
        signals.detach()


async def serve_group_once(
    group: ServiceGroup, metrics: MetricsConfig, signals: ShutdownSignals
) -> int:
    """``serve_once`` for several services: one cycle of each at once, each pushed.

    Each service is pushed to a group of its own (the Pushgateway's
    ``grouping_key`` and ``service=<name>``), with its own series and those
    of no service (the process's). Exit 1 when any cycle or push failed.
    """
    signals.attach(group)
    try:
        for service in group.services:
            _log_start(service, once=True)
        async with group:
            if not all(service.is_running for service in group.services):  # a signal came
                _log.info("stopped before the cycle", reason="shutdown requested")
                return EXIT_OK
            gateway = metrics.pushgateway
            outcomes = await asyncio.gather(
                *(
                    _once(service, gateway, view=ServiceView(service.SERVICE_NAME))
                    for service in group.services
                )
            )
        succeeded = all(ok for ok, _ in outcomes)
        code = EXIT_OK if succeeded or signals.received else EXIT_FAILED
        return EXIT_FAILED if any(pushed is False for _, pushed in outcomes) else code
    finally:
        signals.detach()


async def _once(
    service: BaseService[BaseServiceConfig],
    gateway: pushgateway.PushgatewayConfig | None,
    view: ServiceView | None = None,
) -> tuple[bool, bool | None]:
    """One cycle, its push (when configured) and its ``once done`` line: (succeeded, pushed).

    With a ``view`` (several services) only that service's series are pushed,
    to a group of its own.
    """
    started = service.clock()
    succeeded = await service.run_cycle()
    duration = service.clock() - started
    service.set_gauge("run_duration_seconds", duration)
    pushed = None
    if succeeded:
        # when it ended, on the service's clock (as every timestamp it exports)
        service.set_gauge("last_success_timestamp", service.status().recent[-1].ended_at)
    if gateway is not None:
        if view is not None:
            grouping = {**gateway.grouping_key, "service": service.SERVICE_NAME}
            gateway = gateway.model_copy(update={"grouping_key": grouping})
        pushed = await pushgateway.push(
            gateway,
            service=service.SERVICE_NAME,
            # a failed run keeps the group's last success: the PUT would erase it
            keep_success=None
            if succeeded
            else lambda at: service.set_gauge("last_success_timestamp", at),
            **({"registry": view} if view is not None else {}),
        )
    _log.info(
        "once done",
        outcome="success" if succeeded else "failure",
        duration_seconds=round(duration, 3),
        pushed=pushed,
        **({"service": service.SERVICE_NAME} if view is not None else {}),
    )
    return succeeded, pushed


def _log_start(service: BaseService[BaseServiceConfig], once: bool) -> None:
    service_class = type(service)
    _log.info(
        "starting",
        service=service.SERVICE_NAME,
        target=f"{service_class.__module__}:{service_class.__qualname__}",
        once=once,
        config=masked(service.config),
    )
