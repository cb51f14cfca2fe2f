from prometheus_client import CollectorRegistry

from bigbrotr.core import self_metrics


def families(registry: CollectorRegistry) -> list[str]:
    return [family.name for family in registry.collect()]


def test_each_group_is_registered_once_when_first_used() -> None:
    """A registry gets a group's families on first use only, and shares them after."""
    registry = CollectorRegistry()
    bundle = self_metrics.of(registry)
    assert families(registry) == []
    assert bundle.requests is self_metrics.of(registry).requests
    assert families(registry) == [
        "metrics_handler_requests",
        "metrics_handler_requests_in_flight",
    ]
    bundle.connections.idle.inc()
    bundle.async_collectors.failures.labels("C", "timeout").inc()
    assert (
        registry.get_sample_value(
            "metrics_handler_connections_closed_total", {"reason": "idle_timeout"}
        )
        == 1
    )
    assert "metrics_async_collector_failures" in families(registry)


def test_registries_have_bundles_of_their_own() -> None:
    """Two registries never share a bundle (each registers its own families)."""
    first, second = CollectorRegistry(), CollectorRegistry()
    assert self_metrics.of(first) is not self_metrics.of(second)
    self_metrics.of(first).requests.responses[200].inc()
    assert self_metrics.of(second).requests.in_flight is not None  # registers the group
    labels = {"code": "200"}
    assert first.get_sample_value("metrics_handler_requests_total", labels) == 1
    assert second.get_sample_value("metrics_handler_requests_total", labels) == 0
