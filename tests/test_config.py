from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import Field, SecretStr, ValidationError

from bigbrotr.core.base_service import BaseServiceConfig, load_config
from bigbrotr.core.config import MASK, describe_validation_error, masked
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
