import aiohttp
from prometheus_client import REGISTRY, CollectorRegistry, Gauge

from bigbrotr.core.metrics import (
    CYCLE_DURATION_SECONDS,
    SERVICE_COUNTER,
    SERVICE_GAUGE,
    SERVICE_INFO,
    MetricsConfig,
    start_metrics_server,
)
from tests.support.services import UniqueName


def _registry_with_gauge() -> CollectorRegistry:
    registry = CollectorRegistry()
    Gauge("probe_value", "A probe.", registry=registry).set(42)
    return registry


def test_singletons_live_in_the_default_registry(unique_name: UniqueName) -> None:
    """The four seed metrics are exported from prometheus_client's REGISTRY."""
    name = unique_name()
    SERVICE_GAUGE.labels(name, "depth").set(7)
    SERVICE_COUNTER.labels(name, "done").inc(3)
    CYCLE_DURATION_SECONDS.labels(name).observe(2)
    SERVICE_INFO.info({"service": name})
    get = REGISTRY.get_sample_value
    assert get("service_gauge", {"service": name, "name": "depth"}) == 7
    assert get("service_counter_total", {"service": name, "name": "done"}) == 3
    assert get("cycle_duration_seconds_count", {"service": name}) == 1
    assert get("service_info", {"service": name}) == 1


def test_histogram_buckets_span_milliseconds_to_an_hour(unique_name: UniqueName) -> None:
    """cycle_duration_seconds uses buckets from 5 ms to 3600 s, and +Inf."""
    name = unique_name()
    CYCLE_DURATION_SECONDS.labels(name).observe(7)
    buckets = {}
    for family in REGISTRY.collect():
        if family.name != "cycle_duration_seconds":
            continue
        for sample in family.samples:
            if sample.name.endswith("_bucket") and sample.labels["service"] == name:
                buckets[sample.labels["le"]] = sample.value
    expected = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0"]
    expected += ["10.0", "30.0", "60.0", "120.0", "300.0", "600.0", "1800.0", "3600.0", "+Inf"]
    assert list(buckets) == expected
    assert buckets["5.0"] == 0
    assert buckets["10.0"] == 1


async def test_start_metrics_server_uses_defaults_when_none() -> None:
    """With no config, the server is created with defaults: disabled, so nothing binds."""
    server = await start_metrics_server()
    assert server.port is None


async def test_start_metrics_server_starts_the_given_config(http: aiohttp.ClientSession) -> None:
    """With a config, the returned server is already listening."""
    server = await start_metrics_server(MetricsConfig(enabled=True, port=0))
    assert server.url is not None
    try:
        async with http.get(server.url) as response:
            assert "service_gauge" in await response.text()
    finally:
        await server.stop()


async def test_start_metrics_server_serves_the_given_registry(http: aiohttp.ClientSession) -> None:
    """registry= is served instead of the default REGISTRY."""
    server = await start_metrics_server(MetricsConfig(enabled=True, port=0), _registry_with_gauge())
    assert server.url is not None
    try:
        async with http.get(server.url) as response:
            body = await response.text()
        assert "probe_value 42.0" in body
        assert "service_gauge" not in body
    finally:
        await server.stop()
