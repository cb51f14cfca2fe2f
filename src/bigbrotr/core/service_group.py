"""Several services in one process: one event loop, each on its own schedule, one endpoint.

A ``ServiceGroup`` runs every service's cycle loop as a task of one loop, so
one service's slow or failing cycles never delay another's planned starts
(as long as none blocks the loop). It gives the endpoint each service's
health and status (``/readyz`` is ready only when every service is; the
status page has a section each) and stops them all together: on a shutdown
request, or when one service reaches its ``max_consecutive_failures``, when
the others get their ``shutdown_grace`` to finish.

Examples:
    group = ServiceGroup([Fetcher(eu_config), Report(report_config)])
    server = MetricsServer(metrics, health=group.health, status=group.status)
    await server.start()
    async with group:
        stopped_by = await group.run_forever()
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self

from bigbrotr.core.base_service import BaseService
from bigbrotr.core.health import HealthSnapshot
from bigbrotr.core.status import StatusSnapshot

__all__ = ["ServiceGroup"]


class ServiceGroup:
    """The services of one process; see the module docstring.

    Args:
        services: At least one, with distinct ``SERVICE_NAME`` s (build one
            class twice inside ``base_service.named(...)`` blocks).

    Raises:
        ValueError: No services, or two with one name (their series would mix).
    """

    def __init__(self, services: Sequence[BaseService[Any]]) -> None:
        names = [service.SERVICE_NAME for service in services]
        if not names:
            raise ValueError("a service group needs at least one service")
        if repeated := sorted({name for name in names if names.count(name) > 1}):
            raise ValueError(f"two services named {repeated[0]!r}: each needs a name of its own")
        self.services = tuple(services)

    def health(self) -> dict[str, HealthSnapshot]:
        """Each service's health snapshot, by name; safe from any thread."""
        return {service.SERVICE_NAME: service.health() for service in self.services}

    def status(self) -> tuple[StatusSnapshot, ...]:
        """Each service's status snapshot, in order; safe from any thread."""
        return tuple(service.status() for service in self.services)

    def request_shutdown(self) -> None:
        """Ask every service to stop after its current cycle (within its ``shutdown_grace``)."""
        for service in self.services:
            service.request_shutdown()

    async def run_forever(self) -> BaseService[Any] | None:
        """Run every service's cycles until shutdown, or until one reaches its failure limit.

        Returns:
            The service whose ``max_consecutive_failures`` stopped the group
            (the others were asked to stop, and finished within their grace),
            or None when shutdown was requested.

        Raises:
            BaseException: What a service's ``run_forever`` raised (not a
                failed cycle: ``CancelledError``, ``KeyboardInterrupt``...),
                once the others are cancelled.
        """
        tasks = {
            asyncio.create_task(service.run_forever(), name=f"bigbrotr {service.SERVICE_NAME}"): (
                service
            )
            for service in self.services
        }
        stopped_by: BaseService[Any] | None = None
        try:
            pending: set[asyncio.Task[bool]] = set(tasks)
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task.result() and stopped_by is None:  # its failure limit
                        stopped_by = tasks[task]
                        self.request_shutdown()
        finally:
            for task in tasks:
                task.cancel()  # only those still running: a service that raised, or ours cancelled
            await asyncio.gather(*tasks, return_exceptions=True)
        return stopped_by

    async def __aenter__(self) -> Self:
        for service in self.services:
            await service.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.request_shutdown()
