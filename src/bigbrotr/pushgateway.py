"""The push of ``bigbrotr run --once``: the registry to the Pushgateway, the last success kept.

A push replaces the whole group, so a failed run would otherwise erase the
time of the group's last success, and a "no success for a day" alert would go
silent exactly when it should fire: ``push`` reads it back first.
Failures are reported (logged, and as the result), never raised: the cycle's
own outcome matters more than the push's. The whole of it, both requests,
finishes within the gateway's ``timeout`` (a gateway that drips one byte at a
time cannot hold a run), and the page read back is bounded in size.
"""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import Callable

from prometheus_client import REGISTRY, push_to_gateway
from prometheus_client.registry import CollectorRegistry

from bigbrotr.core.async_collectors import refresh as refresh_async_collectors
from bigbrotr.core.logger import get_logger
from bigbrotr.core.metrics_config import PushgatewayConfig
from bigbrotr.core.samples import samples

__all__ = ["MAX_PAGE_BYTES", "push"]

_log = get_logger(__name__)
#: The most of the Pushgateway's page read back for the last success.
MAX_PAGE_BYTES = 64 * 1024 * 1024


async def push(
    gateway: PushgatewayConfig,
    *,
    service: str,
    keep_success: Callable[[float], None] | None = None,
    registry: CollectorRegistry = REGISTRY,
) -> bool:
    """Push ``registry`` to the gateway, all of it within ``gateway.timeout``; whether it worked.

    Args:
        gateway: Where, and the time the whole push may take.
        service: ``SERVICE_NAME``, to find the group's last success.
        keep_success: Given (a failed run), it is called with the last success
            the gateway holds, before the push replaces the group.
        registry: What to push (async collectors are fetched first).
    """
    try:
        async with asyncio.timeout(gateway.timeout):
            if keep_success is not None and (previous := await _previous_success(gateway, service)):
                keep_success(previous)
            # Values fetched at scrape time are fetched for the push too (failures are logged).
            await refresh_async_collectors(registry, gateway.timeout / 2)
            await asyncio.to_thread(
                push_to_gateway,
                gateway.url,
                job=gateway.job,
                registry=registry,
                grouping_key=gateway.grouping_key,
                timeout=gateway.timeout,
            )
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


async def _previous_success(gateway: PushgatewayConfig, service: str) -> float | None:
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
        page: bytes = response.read(MAX_PAGE_BYTES + 1)
    if len(page) > MAX_PAGE_BYTES:
        raise ValueError(f"its page is over {MAX_PAGE_BYTES // 2**20} MiB")
    text = page.decode()
    for name, labels, value in samples(text):
        if labels.get("instance") == "" and "instance" not in wanted:
            del labels["instance"]  # the Pushgateway adds an empty one
        if name == "service_gauge" and labels == wanted:
            return value
    return None
