import gzip

import pytest
from prometheus_client import CollectorRegistry, Gauge

from bigbrotr.core.exposition import (
    CONTENT_TYPE_OPENMETRICS,
    CONTENT_TYPE_TEXT,
    bake,
    gzip_accepted,
    negotiate,
    scrape_request,
)
from bigbrotr.core.renderer import render

PROMETHEUS_2_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
PROMETHEUS_3_ACCEPT = (
    "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;"
    "encoding=delimited;q=0.5,application/openmetrics-text;version=1.0.0;q=0.4,"
    "application/openmetrics-text;version=0.0.1;q=0.3,text/plain;version=1.0.0;"
    "escaping=allow-utf-8;q=0.2,text/plain;version=0.0.4;q=0.1,*/*;q=0.05"
)


@pytest.mark.parametrize("accept", [PROMETHEUS_2_ACCEPT, PROMETHEUS_3_ACCEPT])
def test_prometheus_scrape_header_gets_openmetrics(accept: str) -> None:
    """Prometheus' own Accept headers (2.x and 3.x) select OpenMetrics 1.0.0."""
    chosen = negotiate(accept)
    assert chosen.openmetrics
    assert chosen.content_type == CONTENT_TYPE_OPENMETRICS


@pytest.mark.parametrize(
    "accept",
    [
        None,
        "",
        "*/*",
        "text/plain",
        "application/json",
        ";;;,,,",
        "application/openmetrics-text;q=abc",
        "application/openmetrics-text;version=2.0.0",
        "application/openmetrics-text;q=0",
    ],
)
def test_default_and_fallback_is_text_0_0_4(accept: str | None) -> None:
    """No header, nothing we write, q=0 or a malformed header: text 0.0.4."""
    chosen = negotiate(accept)
    assert not chosen.openmetrics
    assert chosen.content_type == CONTENT_TYPE_TEXT


def test_q_values_decide_not_order() -> None:
    """A later, higher-q entry wins over an earlier one."""
    assert not negotiate("application/openmetrics-text;q=0.3,text/plain;q=0.9").openmetrics
    assert negotiate("text/plain;q=0.3, application/openmetrics-text").openmetrics


def test_escaping_parameter_is_honoured() -> None:
    """escaping= selects the scheme and is echoed in the content type."""
    chosen = negotiate("application/openmetrics-text;version=1.0.0;escaping=allow-utf-8")
    assert chosen.escaping == "allow-utf-8"
    assert chosen.content_type.endswith("; escaping=allow-utf-8")
    text = negotiate("text/plain;version=1.0.0;escaping=dots")
    assert (text.openmetrics, text.escaping) == (False, "dots")
    assert text.content_type == "text/plain; version=1.0.0; charset=utf-8; escaping=dots"
    assert negotiate("application/openmetrics-text;escaping=bogus").escaping == "underscores"


@pytest.mark.parametrize(
    ("header", "accepted"),
    [
        (None, False),
        ("", False),
        ("gzip", True),
        ("GZIP", True),
        ("deflate, gzip", True),
        ("br;q=1.0, gzip;q=0.8, *;q=0.1", True),
        ("gzip;q=0", False),
        ("identity", False),
        ("*", True),
        ("gzip;q=nonsense", False),
        ("gzip;q=0, *", False),
        ("identity, *;q=0.5", True),
    ],
)
def test_gzip_accepted(header: str | None, accepted: bool) -> None:
    """Gzip is used only when Accept-Encoding allows it with q > 0."""
    assert gzip_accepted(header) is accepted


def test_bake_compresses_only_when_asked() -> None:
    """A render is gzipped only if asked; Content-Encoding is set only on gzip responses."""
    registry = CollectorRegistry()
    Gauge("probe", "P", registry=registry).set(3)
    plain = bake(registry, scrape_request(None), compress=False)
    assert plain.gzipped is None
    body, headers = plain.response(gzip_wanted=True)  # nothing to send compressed
    assert body == render(registry)
    assert "Content-Encoding" not in headers
    assert headers["Content-Type"] == CONTENT_TYPE_TEXT
    shared = bake(registry, scrape_request(PROMETHEUS_2_ACCEPT), compress=True)
    body, headers = shared.response(gzip_wanted=True)
    assert headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(body) == render(registry, openmetrics_format=True)
    body, headers = shared.response(gzip_wanted=False)
    assert "Content-Encoding" not in headers
    assert body == render(registry, openmetrics_format=True)


def test_scrape_request_names_and_equality() -> None:
    """name[] values become a set; equal requests compare equal (so they can share a render)."""
    first = scrape_request("text/plain", ["b", "a"])
    assert first.names == frozenset({"a", "b"})
    assert first == scrape_request("*/*", ["a", "b"])
    assert scrape_request(None).names is None
