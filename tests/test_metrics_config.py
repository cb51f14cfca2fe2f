import subprocess
import sys

import pytest
from pydantic import ValidationError

from bigbrotr.core import metrics, metrics_config
from bigbrotr.core.metrics import MetricsConfig
from bigbrotr.core.metrics_config import PushgatewayConfig


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


def test_the_seeds_module_re_exports_the_configs() -> None:
    """``bigbrotr.core.metrics`` holds the very classes, where the seed documents them."""
    assert metrics.MetricsConfig is metrics_config.MetricsConfig
    assert metrics.PushgatewayConfig is metrics_config.PushgatewayConfig


def test_reading_a_config_loads_no_web_stack_and_registers_no_metric() -> None:
    """The config module imports neither aiohttp nor the module holding the metric families."""
    script = (
        "import sys\n"
        "from bigbrotr.core.metrics_config import MetricsConfig\n"
        "MetricsConfig(enabled=True, port=0)\n"
        "print(sorted({'aiohttp', 'bigbrotr.core.metrics', 'bigbrotr.core.server'}"
        " & set(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert (done.returncode, done.stdout, done.stderr) == (0, "[]\n", "")


def test_a_pushgateway_takes_an_http_url_a_job_and_grouping_labels() -> None:
    """Values of the grouping key may hold ``/``; the timeout defaults to 10 s."""
    config = MetricsConfig.model_validate(
        {
            "enabled": True,
            "pushgateway": {
                "url": "https://gw.example:9091/prefix",
                "job": "nightly",
                "grouping_key": {"path": "/data/in"},
            },
        }
    )
    assert config.pushgateway == PushgatewayConfig(
        url="https://gw.example:9091/prefix", job="nightly", grouping_key={"path": "/data/in"}
    )
    assert config.pushgateway.timeout == 10.0


@pytest.mark.parametrize(
    ("pushgateway", "field", "message"),
    [
        ({"url": "gw:9091", "job": "n"}, "url", "should match pattern"),
        ({"url": "ftp://gw:9091", "job": "n"}, "url", "should match pattern"),
        ({"url": "http://gw:9091", "job": ""}, "job", "at least 1 character"),
        ({"url": "http://gw:9091", "job": "n", "timeout": 0}, "timeout", "greater than 0"),
        ({"url": "http://gw:9091", "job": "n", "timeout": 601}, "timeout", "less than or equal"),
        ({"url": "http://gw:9091"}, "job", "Field required"),
    ],
)
def test_a_pushgateway_without_a_usable_url_job_or_timeout_is_refused(
    pushgateway: dict[str, object], field: str, message: str
) -> None:
    """Each mistake is reported at its own field."""
    with pytest.raises(ValidationError) as info:
        MetricsConfig.model_validate({"enabled": True, "pushgateway": pushgateway})
    (error,) = info.value.errors()
    assert error["loc"] == ("pushgateway", field)
    assert message in error["msg"]


def test_a_pushgateway_needs_metrics_enabled() -> None:
    """Pushing needs the metrics recorded: with enabled false it is refused, saying so."""
    with pytest.raises(ValidationError, match="pushgateway needs enabled: true"):
        MetricsConfig.model_validate({"pushgateway": {"url": "http://gw:9091", "job": "n"}})


def test_an_idle_connection_outlasts_a_render() -> None:
    """idle_timeout must be longer than render_timeout, or a slow scrape would be cut off."""
    assert MetricsConfig(render_timeout=10, idle_timeout=10.5).idle_timeout == 10.5
    with pytest.raises(ValidationError, match=r"idle_timeout \(10\.0\) must be longer than"):
        MetricsConfig(render_timeout=10, idle_timeout=10)
    with pytest.raises(ValidationError, match="idle_timeout"):
        MetricsConfig(render_timeout=30)  # the default idle_timeout, 15 s, is now too short


def test_unprotected_paths_are_paths() -> None:
    """Each path left open must start with '/', as a request's path does."""
    config = MetricsConfig(unprotected_paths=frozenset({"/healthz", "/livez"}))
    assert config.unprotected_paths == {"/healthz", "/livez"}
    with pytest.raises(ValidationError, match="unprotected path 'healthz' must start with '/'"):
        MetricsConfig(unprotected_paths=frozenset({"healthz"}))


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"max_names": 9}, "max_names"),
        ({"max_names": 1_000_001}, "max_names"),
        ({"max_requests_in_flight": 0}, "max_requests_in_flight"),
        ({"max_connections": 0}, "max_connections"),
        ({"idle_timeout": 0}, "idle_timeout"),
    ],
)
def test_limits_have_floors_and_ceilings(fields: dict[str, int], field: str) -> None:
    """A limit that would refuse every scrape, or guard nothing, is refused at its field."""
    with pytest.raises(ValidationError) as info:
        MetricsConfig.model_validate(fields)
    assert info.value.errors()[0]["loc"] == (field,)
