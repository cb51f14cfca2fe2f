import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from bigbrotr.core.service_config import (
    MIN_INTERVAL,
    ONE_WEEK_SECONDS,
    BaseServiceConfig,
    load_config,
)
from bigbrotr.core.yaml import ConfigFileError


class Batched(BaseServiceConfig):
    """A service's own settings beside the base ones."""

    batch_size: int = 10


def test_config_defaults() -> None:
    """Interval 300 s, five failures, metrics off."""
    config = BaseServiceConfig()
    assert config.interval == 300.0
    assert config.max_consecutive_failures == 5
    assert config.metrics.enabled is False


@pytest.mark.parametrize(
    "fields",
    [
        {"interval": 0},
        {"interval": -1},
        {"interval": 604_801},
        {"max_consecutive_failures": -1},
        {"max_consecutive_failures": 101},
        {"intervall": 5},
        {"metrics": {"port": 80}},
    ],
)
def test_config_rejects_bad_values(fields: dict[str, object]) -> None:
    """Out-of-range values and unknown keys are rejected."""
    with pytest.raises(ValidationError):
        BaseServiceConfig(**fields)  # type: ignore[arg-type]


def test_config_accepts_bounds() -> None:
    """One week, 0 (unlimited) and 100 failures are allowed."""
    config = BaseServiceConfig(interval=604_800, max_consecutive_failures=0)
    assert config.interval == 604_800
    assert config.max_consecutive_failures == 0
    assert BaseServiceConfig(max_consecutive_failures=100).max_consecutive_failures == 100


def test_timeouts_default_to_none_and_the_grace_fits_kubernetes() -> None:
    """No cycle timeout or staleness override by default; the grace is under Kubernetes' 30 s."""
    config = BaseServiceConfig()
    assert (config.cycle_timeout, config.stale_after) == (None, None)
    assert 0 < config.shutdown_grace < 30
    assert config.loop_block_threshold == 1.0


@pytest.mark.parametrize(
    ("field", "accepted", "refused"),
    [
        ("interval", [MIN_INTERVAL, ONE_WEEK_SECONDS], [MIN_INTERVAL / 2, math.nan, math.inf]),
        ("cycle_timeout", [None, 0.001, ONE_WEEK_SECONDS], [0, -1, ONE_WEEK_SECONDS + 1]),
        ("shutdown_grace", [0, 3600], [-0.001, 3601, math.nan]),
        ("loop_block_threshold", [0, 3600], [-0.001, 3601]),
        ("stale_after", [None, 0.001, ONE_WEEK_SECONDS], [0, ONE_WEEK_SECONDS + 1]),
    ],
)
def test_each_duration_takes_its_edges_and_refuses_past_them(
    field: str, accepted: list[float | None], refused: list[float]
) -> None:
    """Floors and ceilings are inclusive where documented; past them, the error names the field."""
    for value in accepted:
        assert getattr(BaseServiceConfig.model_validate({field: value}), field) == value
    for value in refused:
        with pytest.raises(ValidationError, match=field):
            BaseServiceConfig.model_validate({field: value})


def test_a_too_short_interval_says_why() -> None:
    """Below 0.01 s the message gives the floor and the reason, not only a range."""
    with pytest.raises(ValidationError, match=r"interval must be at least 0\.01 s \(shorter busy"):
        BaseServiceConfig(interval=0.001)


def test_load_config_builds_the_class_given_from_yaml(tmp_path: Path) -> None:
    """The file is validated by the class passed: its own fields and the base ones."""
    path = tmp_path / "svc.yaml"
    path.write_text("batch_size: 3\ninterval: 5\nmetrics:\n  enabled: true\n")
    config = load_config(Batched, path)
    assert isinstance(config, Batched)
    assert (config.batch_size, config.interval, config.metrics.enabled) == (3, 5.0, True)


def test_an_empty_file_gives_the_defaults(tmp_path: Path) -> None:
    """An empty YAML file is an empty mapping: every field keeps its default."""
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert load_config(Batched, path) == Batched()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("batch_size: lots\n", ": field 'batch_size': Input should be a valid integer"),
        ("cycle_timeout: 0\n", ": field 'cycle_timeout': Input should be greater than 0 (got 0)"),
        ("interval: 0.001\n", ": field 'interval': interval must be at least 0.01 s"),
        ("metrics:\n  port: 80\n", ": field 'metrics.port': port must be 0 (any free port) or"),
        ("shutdown_grace: [1]\n", ": field 'shutdown_grace': Input should be a valid number"),
        ("- interval\n", ":1: top level must be a mapping of settings, got a list"),
        ("interval: 5\n  port: 1\n", ":2: mapping values are not allowed here"),
        (
            "interval: 60\nschedule: '0 3 * * *'\n",
            ": field 'schedule': give interval or schedule, not both (got '0 3 * * *')",
        ),
        (
            "schedule: '0 3 * *'\n",
            ": field 'schedule': not a cron expression (Wrong number of fields): expected five"
            " fields, minute hour day month weekday",
        ),
        (
            "schedule: '@daily'\ntimezone: Europe/Berln\n",
            ": field 'timezone': unknown time zone 'Europe/Berln': expected an IANA name",
        ),
        ("timezone: Europe/Berlin\n", ": field 'timezone': applies to a cron schedule only"),
        (
            "schedule: '*/5 * * * *'\njitter: 300\n",
            ": field 'jitter': must be shorter than the shortest gap between planned starts"
            " (300 s) (got 300.0)",
        ),
        ("interval: 10\njitter: 10\n", ": field 'jitter': must be shorter than the shortest"),
        ("jitter: -1\n", ": field 'jitter': Input should be greater than or equal to 0"),
    ],
)
def test_load_config_errors_name_the_file_and_the_field_or_line(
    tmp_path: Path, text: str, expected: str
) -> None:
    """A value, a type or the YAML itself wrong: one ConfigFileError line naming the file first."""
    path = tmp_path / "svc.yaml"
    path.write_text(text)
    with pytest.raises(ConfigFileError) as info:
        load_config(Batched, path)
    message = str(info.value)
    assert message.startswith(f"{path}{expected}"), message
    assert "\n" not in message


def test_run_at_start_defaults_to_the_schedules_way() -> None:
    """At once with an interval (as always), at the first planned start with cron."""
    assert BaseServiceConfig().runs_at_start() is True
    assert BaseServiceConfig(schedule="@daily").runs_at_start() is False
    assert BaseServiceConfig(schedule="@daily", run_at_start=True).runs_at_start() is True
    assert BaseServiceConfig(interval=5, run_at_start=False).runs_at_start() is False


def test_a_missing_file_is_file_not_found(tmp_path: Path) -> None:
    """A missing file raises FileNotFoundError (the CLI turns it into one line)."""
    with pytest.raises(FileNotFoundError):
        load_config(Batched, tmp_path / "absent.yaml")


def test_web_config_file_in_yaml_is_relative_to_that_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative web_config_file in YAML is beside the YAML; absolute ones and Python's stay."""
    (tmp_path / "conf").mkdir()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    path = tmp_path / "conf" / "svc.yaml"
    path.write_text("metrics:\n  web_config_file: tls/web.yml\n")
    assert load_config(BaseServiceConfig, "../conf/svc.yaml").metrics.web_config_file == str(
        tmp_path / "conf" / "tls" / "web.yml"
    )
    path.write_text(f"metrics:\n  web_config_file: {tmp_path / 'web.yml'}\n")
    assert load_config(BaseServiceConfig, path).metrics.web_config_file == str(tmp_path / "web.yml")
    built = BaseServiceConfig.model_validate({"metrics": {"web_config_file": "web.yml"}})
    assert built.metrics.web_config_file == "web.yml"


yaml_pieces = st.sampled_from(
    ["interval", "metrics", "port", "host", "path", "enabled", "max_names", "cycle_timeout",
     ":", ": ", "\n", "  ", "- ", "&a ", "*a", "[", "]", "{", "}", ",", "'", '"', "#", "true",
     "1e-9", "-1", "0", "9999999", "null", "~", "!!binary ", "!!python/object ", "${X}",
     "${X:-1}", "/metrics?x", "\t", "\\", "é", "\x00", "---\n", "...\n"]
)  # fmt: skip


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(yaml_pieces, max_size=40).map("".join))
def test_any_config_text_loads_or_is_one_clear_line(tmp_path: Path, text: str) -> None:
    """Whatever the file holds, loading gives a config or one short ConfigFileError line."""
    path = tmp_path / "fuzz.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        load_config(BaseServiceConfig, path)
    except ConfigFileError as exc:
        message = str(exc)
        assert "\n" not in message and message.startswith(str(path))
        assert len(message) < 2000
