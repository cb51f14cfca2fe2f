"""The metrics endpoint for any asyncio web framework: the policy plus concurrency.

``Endpoint.respond`` is what every adapter (aiohttp, ASGI) calls. It adds to
the pure policy in ``_http`` what needs state: renders run on a worker thread
and are shared by concurrent scrapes (``Coalescer``), at most
``max_requests_in_flight`` scrapes are served at once, a render slower than
``render_timeout`` answers 503, and the endpoint counts its own responses.
Async collectors are fetched on their own loop first, within half that timeout.
"""

from __future__ import annotations

import asyncio
from functools import partial

from prometheus_client import REGISTRY
from prometheus_client.registry import CollectorRegistry

from bigbrotr.core import self_metrics
from bigbrotr.core.async_collectors import refresh
from bigbrotr.core.exposition._coalescer import Coalescer, DaemonThreadExecutor, TooManyKeys
from bigbrotr.core.exposition._fast_path import registered_names
from bigbrotr.core.exposition._http import (
    Rendered,
    RenderKey,
    Request,
    Response,
    answer,
    bake,
    failure_reason,
    for_method,
    route,
    shutting_down,
    timed_out,
    too_many_in_flight,
    too_many_renders,
)
from bigbrotr.core.exposition._renderer import family_names
from bigbrotr.core.logger import Throttle, get_logger

__all__ = ["Endpoint"]


def _answers_to(names: frozenset[str], name: str, kind: str) -> bool:
    """Whether a family of ``name`` and ``kind`` answers to one of ``names`` (``name[]``)."""
    return not names.isdisjoint(family_names(name, kind))


_log = get_logger(__name__)
_MAX_REMEMBERED_ERRORS = 100


class Endpoint:
    """Serves scrapes of ``registry`` without rendering on the event loop.

    Args:
        registry: The registry to expose; its
            ``metrics_handler_requests_total{code}`` and
            ``metrics_handler_requests_in_flight`` are registered here.
        path: The path served; None serves every path.
        max_requests_in_flight: Scrapes served at once; more get 503.
        render_timeout: Seconds a scrape waits for its render before 503.

    Raises:
        ValueError: If ``registry`` already holds metrics with the handler
            metrics' names (registered by something else).
    """

    def __init__(
        self,
        registry: CollectorRegistry = REGISTRY,
        *,
        path: str | None = "/metrics",
        max_requests_in_flight: int = 10,
        render_timeout: float = 10.0,
    ) -> None:
        self._registry = registry
        self._path = path
        self._limit = max_requests_in_flight
        self._timeout = render_timeout
        self._metrics = self_metrics.of(registry).requests
        self._executor: DaemonThreadExecutor | None = None
        self._coalescer: Coalescer[RenderKey, bool, Rendered] | None = None
        self._in_flight = 0
        self._errors = Throttle(max_kinds=_MAX_REMEMBERED_ERRORS, log_unremembered=False)

    async def respond(self, request: Request) -> Response:
        """The response to one request; renders never run on the calling loop."""
        return for_method(request, await self._respond(request))

    async def _respond(self, request: Request) -> Response:
        scrape = route(request, self._path)
        if isinstance(scrape, Response):
            return scrape
        if self._in_flight >= self._limit:
            return self._counted(too_many_in_flight(self._limit))
        self._in_flight += 1
        self._metrics.in_flight.inc()
        try:
            async with asyncio.timeout(self._timeout):
                # Async collectors first, on their own loop, with half the time at most;
                # a name[] scrape skips those whose families it leaves out.
                names = scrape.key.names
                wanted = None if names is None else partial(_answers_to, names)
                taken = partial(_answers_to, registered_names(self._registry))
                await refresh(self._registry, self._timeout / 2, wanted, taken)
                rendered = await self._shared().get(scrape.key, scrape.gzip)
        except TimeoutError:
            return self._counted(timed_out(self._timeout))
        except TooManyKeys as exc:
            return self._counted(too_many_renders(str(exc)))
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # this request was cancelled, not the render it waited for
            return self._counted(shutting_down())  # close() cancelled the shared render
        except Exception as exc:
            self._log_once(exc)
            return self._counted(answer(scrape, exc))
        finally:
            self._in_flight -= 1
            self._metrics.in_flight.dec()
        return self._counted(answer(scrape, rendered))

    def close(self) -> None:
        """Stop the render thread; a later ``respond`` starts a new one."""
        executor, self._executor, self._coalescer = self._executor, None, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    def _shared(self) -> Coalescer[RenderKey, bool, Rendered]:
        if self._coalescer is None:
            self._executor = DaemonThreadExecutor("bigbrotr-render")
            registry = self._registry
            self._coalescer = Coalescer(
                lambda key, gzip: bake(registry, key, True in gzip), self._executor
            )
        return self._coalescer

    def _counted(self, response: Response) -> Response:
        self._metrics.responses[response.status].inc()
        return response

    def _log_once(self, error: Exception) -> None:
        reason = failure_reason(error)
        if self._errors.note(reason).log:
            _log.error("scrape failed", reason=reason, exc_info=error)
