"""The push of ``bigbrotr run --once``: the registry to the Pushgateway, the last success kept.

A push replaces the whole group, so a failed run would otherwise erase the
time of the group's last success, and a "no success for a day" alert would go
silent exactly when it should fire: ``push`` reads it back first.
Failures are reported (logged, and as the result), never raised: the cycle's
own outcome matters more than the push's. The whole of it, both requests,
finishes within the gateway's ``timeout`` (a gateway that drips one byte at a
time cannot hold a run), and the page read back is bounded in size. Both
requests are aiohttp's, on the loop, so a push that gives up leaves no thread
behind; the body is bigbrotr's own render, so a name prometheus_client cannot
encode (a lone surrogate) is pushed escaped, as it is scraped.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable, Iterator
from urllib.parse import quote_plus

import aiohttp
from prometheus_client import REGISTRY
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import CollectorRegistry

from bigbrotr.core.async_collectors import refresh as refresh_async_collectors
from bigbrotr.core.exposition import CONTENT_TYPE_TEXT, render
from bigbrotr.core.logger import get_logger
from bigbrotr.core.metrics_config import PushgatewayConfig
from bigbrotr.core.samples import samples

__all__ = ["MAX_PAGE_BYTES", "PushgatewayConfig", "ServiceView", "group_url", "push"]

_log = get_logger(__name__)
#: The most of the Pushgateway's page read back for the last success.
MAX_PAGE_BYTES = 64 * 1024 * 1024


class ServiceView:
    """One service's series of a registry, and those of no service (the process's).

    What a process with several services pushes for each of them, to a group
    of its own: another service's series would land in the wrong group.
    """

    def __init__(self, service: str, registry: CollectorRegistry = REGISTRY) -> None:
        self.service, self.registry = service, registry

    def collect(self) -> Iterator[Metric]:
        """Each family of the registry, with only this service's samples (or none's)."""
        for family in self.registry.collect():
            mine = self.service
            kept = [s for s in family.samples if s.labels.get("service", mine) == mine]
            if kept:
                view = Metric(family.name, family.documentation, family.type, family.unit)
                view.samples = kept
                yield view


async def push(
    gateway: PushgatewayConfig,
    *,
    service: str,
    keep_success: Callable[[float], None] | None = None,
    registry: CollectorRegistry | ServiceView = REGISTRY,
) -> bool:
    """Push ``registry`` to the gateway, all of it within ``gateway.timeout``; whether it worked.

    Args:
        gateway: Where, and the time the whole push may take.
        service: ``SERVICE_NAME``, to find the group's last success.
        keep_success: Given (a failed run), it is called with the last success
            the gateway holds, before the push replaces the group.
        registry: What to push (async collectors are fetched first): a
            registry, or one service's view of it.
    """
    try:
        async with asyncio.timeout(gateway.timeout), _session() as session:
            if keep_success is not None and (
                previous := await _previous_success(session, gateway, service)
            ):
                keep_success(previous)
            # Values fetched at scrape time are fetched for the push too (failures are logged).
            whole = registry.registry if isinstance(registry, ServiceView) else registry
            await refresh_async_collectors(whole, gateway.timeout / 2)
            body = await asyncio.to_thread(render, registry)
            headers = {"Content-Type": CONTENT_TYPE_TEXT}
            async with session.put(group_url(gateway), data=body, headers=headers) as response:
                if response.status >= 400:
                    raise RuntimeError(f"the gateway answered {response.status} {response.reason}")
    except TimeoutError:
        _log.error("push to the Pushgateway failed", url=gateway.url,
                   reason=f"took longer than timeout={gateway.timeout:g}s")  # fmt: skip
        return False
    except Exception as exc:  # any failure of the push is reported, never raised
        _log.error(
            "push to the Pushgateway failed", url=gateway.url, reason=f"{type(exc).__name__}: {exc}"
        )
        return False
    return True


def _session() -> aiohttp.ClientSession:
    # trust_env: the proxy variables apply, as they did to urllib's push
    return aiohttp.ClientSession(trust_env=True)


def group_url(gateway: PushgatewayConfig) -> str:
    """The URL of the push's group, as prometheus_client builds it.

    A value that is empty, or holds ``/`` or a space, goes in the gateway's
    base64 form (``key@base64/...``); the grouping labels are sorted.
    """
    parts = [("job", gateway.job), *sorted(gateway.grouping_key.items())]
    return gateway.url.rstrip("/") + "/metrics" + "".join(_escaped(*part) for part in parts)


def _escaped(key: str, value: str) -> str:
    if value == "":
        return f"/{key}@base64/="
    if "/" in value or " " in value:
        return f"/{key}@base64/{base64.urlsafe_b64encode(value.encode()).decode()}"
    return f"/{key}/{quote_plus(value)}"


async def _previous_success(
    session: aiohttp.ClientSession, gateway: PushgatewayConfig, service: str
) -> float | None:
    """The ``last_success_timestamp`` the Pushgateway holds for this group, or None.

    When it cannot be read, the push goes on without it and a WARNING says so.
    """
    wanted = {
        "job": gateway.job,
        **gateway.grouping_key,
        "service": service,
        "name": "last_success_timestamp",
    }
    try:
        page = await _page(session, f"{gateway.url.rstrip('/')}/metrics")
        for name, labels, value in samples(page):
            if labels.get("instance") == "" and "instance" not in wanted:
                del labels["instance"]  # the Pushgateway adds an empty one
            if name == "service_gauge" and labels == wanted:
                return value
    except Exception as exc:  # unreachable, or not metrics (a proxy's page): push anyway
        _log.warning(
            "could not read the last success from the Pushgateway",
            url=gateway.url,
            reason=f"{type(exc).__name__}: {exc}",
        )
    return None


async def _page(session: aiohttp.ClientSession, url: str) -> str:
    """The gateway's page, at most ``MAX_PAGE_BYTES`` of it (more is refused, unread)."""
    async with session.get(url) as response:
        response.raise_for_status()
        page = bytearray()
        async for chunk in response.content.iter_chunked(2**16):
            page += chunk
            if len(page) > MAX_PAGE_BYTES:
                raise ValueError(f"its page is over {MAX_PAGE_BYTES // 2**20} MiB")
    return page.decode()
