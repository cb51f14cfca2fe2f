from pathlib import Path

import pytest
from pydantic import Field, SecretStr, ValidationError

from bigbrotr.core.base_service import BaseServiceConfig, load_config
from bigbrotr.core.config import MASK, Settings, describe_validation_error, masked
from bigbrotr.core.yaml import ConfigFileError, FromEnvironment, IntFromEnvironment


class AppConfig(BaseServiceConfig):
    """A service's own settings, with secrets of every kind."""

    batch_size: int = 100
    ratio: float | None = None
    api_token: str = ""
    db_password: str = ""
    signing: SecretStr = SecretStr("")
    dsn: str = ""
    note: str = ""


def error_line(**fields: object) -> str:
    with pytest.raises(ValidationError) as info:
        AppConfig.model_validate(fields)
    return describe_validation_error(info.value)


class Target(Settings):
    """A nested setting, reached through a dict and a list too."""

    name: str = ""
    timeout: float = Field(default=1.0, alias="timeoutSeconds")


class Fleet(BaseServiceConfig):
    """A service's settings with nested models in every shape pydantic reports."""

    batch_size: int = 100
    primary: Target | None = None
    by_name: dict[str, Target] = Field(default_factory=dict)
    targets: list[Target] = Field(default_factory=list)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"batch_sise": 1}, "unknown field 'batch_sise' (did you mean 'batch_size'?)"),
        ({"Interval": 1}, "unknown field 'Interval' (did you mean 'interval'?)"),
        ({"metrics": {"prot": 1}}, "unknown field 'metrics.prot' (did you mean 'metrics.port'?)"),
        (
            {"primary": {"timeoutSecond": 1}},
            "unknown field 'primary.timeoutSecond' (did you mean 'primary.timeoutSeconds'?)",
        ),
        (
            {"by_name": {"a": {"nmae": "x"}}},
            "unknown field 'by_name.a.nmae' (did you mean 'by_name.a.name'?)",
        ),
        (
            {"targets": [{}, {"nam": "x"}]},
            "unknown field 'targets.1.nam' (did you mean 'targets.1.name'?)",
        ),
        ({"colour": "blue"}, "unknown field 'colour'"),
    ],
)
def test_an_unknown_key_is_given_the_closest_known_one(
    fields: dict[str, object], expected: str
) -> None:
    """A typo names the known key it is nearest to, at its own level; nothing close, nothing."""
    with pytest.raises(ValidationError) as info:
        Fleet.model_validate(fields)
    assert describe_validation_error(info.value, model=Fleet) == expected


def test_an_unknown_key_in_a_yaml_file_names_its_line(tmp_path: Path) -> None:
    """Loaded from YAML, an unknown key's error gives its line; built in Python, no line."""
    path = tmp_path / "bad.yaml"
    path.write_text("interval: 5\nmetrics:\n  enabled: true\n  prot: 9100\nbatch_sise: 3\n")
    with pytest.raises(ConfigFileError) as info:
        load_config(Fleet, path)
    assert str(info.value) == (
        f"{path}: unknown field 'metrics.prot' at line 4 (did you mean 'metrics.port'?); "
        "unknown field 'batch_sise' at line 5 (did you mean 'batch_size'?)"
    )
    assert "line" not in error_line(batch_sise=3)


@pytest.mark.parametrize(
    ("fields", "field", "value"),
    [
        ({"interval": True}, "interval", True),
        ({"batch_size": False}, "batch_size", False),
        ({"ratio": True}, "ratio", True),
        ({"cycle_timeout": True}, "cycle_timeout", True),
        ({"metrics": {"port": True}}, "metrics.port", True),
    ],
)
def test_booleans_are_not_numbers(fields: dict[str, object], field: str, value: bool) -> None:
    """True or false where a number belongs is an error naming the field, ours or the user's."""
    expected = f"field '{field}': expected a number, not a boolean (got {value})"
    assert error_line(**fields) == expected


def test_booleans_still_work_for_booleans() -> None:
    """Boolean fields keep taking booleans."""
    assert AppConfig.model_validate({"metrics": {"enabled": True}}).metrics.enabled is True


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"interval": 1e-9}, "interval must be at least 0.01 s (shorter busy-loops)"),
        ({"metrics": {"render_timeout": 1e-9}}, "render_timeout must be at least 0.1 s"),
        ({"metrics": {"path": "/metrics?x=1"}}, "must not contain '?' or '#'"),
        ({"metrics": {"path": "/metrics#top"}}, "must not contain '?' or '#'"),
    ],
)
def test_unusable_values_are_refused_with_the_reason(
    fields: dict[str, object], reason: str
) -> None:
    """Values that would validate but never work (busy loop, every scrape 503, unreachable path)."""
    assert reason in error_line(**fields)


def test_values_from_the_environment_are_never_echoed() -> None:
    """A bad value that came from ${VAR} (maybe a secret) is not repeated in the error."""
    line = error_line(batch_size=FromEnvironment("hunter2-not-a-number"))
    assert "hunter2" not in line
    assert line.endswith("(got a value from the environment, not shown)")


def test_long_values_are_shortened_in_errors() -> None:
    """An echoed value is cut, so one error stays one short line."""
    line = error_line(batch_size="9" * 10_000 + "x")
    assert len(line) < 300 and "(10003 characters)" in line


def test_masked_hides_secrets_by_type_name_and_url() -> None:
    """SecretStr, secret-named fields and URL passwords are masked; nothing else is."""
    config = AppConfig(
        api_token=FromEnvironment("tok-123"),
        db_password="pw",
        signing=SecretStr("key"),
        dsn="postgresql://app:s3cr3t@db:5432/main",
        note="see https://example.com/a:b@c is not a credential",
    )
    shown = masked(config)
    assert shown["api_token"] == MASK
    assert shown["db_password"] == MASK
    assert shown["signing"] == "**********"  # pydantic's own mask for SecretStr
    assert shown["dsn"] == f"postgresql://app:{MASK}@db:5432/main"
    assert shown["note"] == "see https://example.com/a:b@c is not a credential"
    assert shown["batch_size"] == 100 and shown["metrics"]["port"] == 8000
    assert "s3cr3t" not in repr(shown) and "tok-123" not in repr(shown)


def test_environment_numbers_and_whole_sections_are_not_echoed() -> None:
    """A number from ${VAR} and a whole section (model-level errors) are never repeated."""
    line = error_line(api_token=IntFromEnvironment(12345678))
    assert "12345678" not in line and "a value from the environment, not shown" in line
    line = error_line(metrics={"host": "secret-host.internal", "idle_timeout": 1})
    assert "secret-host" not in line and "(got a dict of 2)" in line


class Nested(BaseServiceConfig):
    """Secrets in the shapes real configs have."""

    credentials: dict[str, str] = Field(default_factory=dict)
    authorization: str = ""
    private_key: str = ""
    webhooks: list[str] = Field(default_factory=list)
    max_tokens: int = 0


def test_masked_reaches_nested_secrets_and_awkward_urls() -> None:
    """Secret-named sections, auth headers, keys, @ or / in URL passwords and ?token= are hidden."""
    shown = masked(
        Nested(
            credentials={"user": "bob", "pass": "hunter2"},
            authorization="Bearer abc.def",
            private_key="-----BEGIN KEY-----",
            webhooks=[
                "postgres://u:p@ss@db/x",
                "postgres://u:pa/ss@db/x",
                "https://h/x?token=t0k&v=1",
            ],
            max_tokens=100,
        )
    )
    assert shown["credentials"] == {"user": MASK, "pass": MASK}
    assert shown["authorization"] == MASK and shown["private_key"] == MASK
    assert shown["webhooks"] == [
        f"postgres://u:{MASK}@db/x",
        f"postgres://u:{MASK}@db/x",
        f"https://h/x?token={MASK}&v=1",
    ]
    assert shown["max_tokens"] == 100  # a limit, not a secret
