import asyncio

from prometheus_client import CollectorRegistry

from bigbrotr.core.exposition import Endpoint, Request
from tests.support.collectors import GatedCollector

OPENMETRICS = ("Accept", "application/openmetrics-text;version=1.0.0")


async def render_started(gated: GatedCollector) -> None:
    """Wait until a render is blocked inside the gated collector."""
    while gated.calls == 0:
        await asyncio.sleep(0.01)


async def test_close_answers_queued_scrapes_with_503(
    gated_registry: tuple[CollectorRegistry, GatedCollector],
) -> None:
    """Closing the endpoint mid-scrape answers a scrape whose render was dropped with 503."""
    registry, gated = gated_registry
    endpoint = Endpoint(registry)
    running = asyncio.create_task(endpoint.respond(Request("GET", "/metrics")))
    await render_started(gated)
    queued = asyncio.create_task(endpoint.respond(Request("GET", "/metrics", [OPENMETRICS])))
    while registry.get_sample_value("metrics_handler_requests_in_flight") != 2:
        await asyncio.sleep(0.01)
    endpoint.close()
    gated.gate.set()
    first, second = await asyncio.gather(running, queued)
    assert first.status == 200
    assert (second.status, second.body) == (503, b"the metrics endpoint is shutting down\n")
    assert registry.get_sample_value("metrics_handler_requests_total", {"code": "503"}) == 1


async def test_a_cancelled_request_is_cancelled_not_answered(
    gated_registry: tuple[CollectorRegistry, GatedCollector],
) -> None:
    """Cancelling the request itself (a client gone) still raises CancelledError in it."""
    registry, gated = gated_registry
    endpoint = Endpoint(registry)
    request = asyncio.create_task(endpoint.respond(Request("GET", "/metrics")))
    await render_started(gated)
    request.cancel()
    gated.gate.set()
    await asyncio.gather(request, return_exceptions=True)
    assert request.cancelled()
    endpoint.close()


async def test_a_hung_collector_bounds_what_waits_behind_it(
    gated_registry: tuple[CollectorRegistry, GatedCollector],
) -> None:
    """With a render stuck, distinct pending renders stop at 16; more answer 503 at once."""
    registry, gated = gated_registry
    endpoint = Endpoint(registry, max_requests_in_flight=100, render_timeout=0.2)
    stuck = asyncio.create_task(endpoint.respond(Request("GET", "/metrics")))
    await render_started(gated)
    filters = [Request("GET", "/metrics", query=[("name[]", f"family_{i}")]) for i in range(15)]
    waiting = [asyncio.create_task(endpoint.respond(request)) for request in filters]
    while registry.get_sample_value("metrics_handler_requests_in_flight") != 16:
        await asyncio.sleep(0.005)
    refused = await endpoint.respond(Request("GET", "/metrics", query=[("name[]", "one_more")]))
    assert refused.status == 503
    assert refused.body.startswith(b"too many different renders pending (16 different")
    timed_out = await asyncio.gather(stuck, *waiting)
    assert {response.status for response in timed_out} == {503}  # render_timeout, not hung
    gated.gate.set()
    endpoint.close()
