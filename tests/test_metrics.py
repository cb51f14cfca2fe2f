import aiohttp
import pytest
from prometheus_client import REGISTRY, CollectorRegistry, Gauge
from pydantic import ValidationError

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


def test_config_defaults_match_the_seed() -> None:
    """Metrics are off by default and bound to loopback."""
    config = MetricsConfig()
    assert (config.enabled, config.port, config.host, config.path) == (
        False,
        8000,
        "127.0.0.1",
        "/metrics",
    )


@pytest.mark.parametrize("port", [0, 1024, 8000, 65535])
def test_config_accepts_valid_ports(port: int) -> None:
    """Port 0 (any free port) and 1024-65535 are valid."""
    assert MetricsConfig(port=port).port == port


@pytest.mark.parametrize("port", [-1, 1, 80, 1023, 65536])
def test_config_rejects_invalid_ports(port: int) -> None:
    """Privileged and out-of-range ports are rejected with the range in the message."""
    with pytest.raises(ValidationError, match="between 1024 and 65535"):
        MetricsConfig(port=port)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"host": ""}, "at least 1 character"),
        ({"path": ""}, "must start with '/'"),
        ({"path": "metrics"}, "must start with '/'"),
    ],
)
def test_config_rejects_bad_host_and_path(fields: dict[str, str], message: str) -> None:
    """An empty host, or a path not starting with '/', is rejected."""
    with pytest.raises(ValidationError, match=message):
        MetricsConfig(**fields)  # type: ignore[arg-type]


def test_config_rejects_unknown_keys_by_name() -> None:
    """An unknown key is an error that names the key."""
    with pytest.raises(ValidationError) as info:
        MetricsConfig(prot=9000)  # type: ignore[call-arg]
    assert info.value.errors()[0]["loc"] == ("prot",)
    assert info.value.errors()[0]["type"] == "extra_forbidden"


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
