import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from bigbrotr.core.metrics_config import MetricsConfig
from bigbrotr.ports import valid_port


@pytest.mark.parametrize(
    ("port", "valid"),
    [(0, True), (1024, True), (9100, True), (65535, True), (-1, False), (1, False),
     (80, False), (1023, False), (65536, False)],
)  # fmt: skip
def test_zero_and_unprivileged_ports_are_valid(port: int, valid: bool) -> None:
    """0 picks a free port; 1024-65535 need no privileges; nothing else can be bound."""
    assert valid_port(port) is valid


@given(st.integers(-100, 70_000))
def test_the_config_and_the_rule_agree_on_every_port(port: int) -> None:
    """MetricsConfig.port (and so ``run --port``, which uses the rule) accepts exactly these."""
    try:
        MetricsConfig(port=port)
    except ValidationError:
        accepted = False
    else:
        accepted = True
    assert accepted is valid_port(port)
