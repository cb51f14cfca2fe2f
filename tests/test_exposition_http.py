import gzip
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import Metric

from bigbrotr.core.exposition import (
    CONTENT_TYPE_OPENMETRICS,
    CONTENT_TYPE_TEXT,
    Request,
    Response,
    gzip_accepted,
    negotiate,
    render,
    respond,
)

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


def get(registry: CollectorRegistry, *headers: tuple[str, str], **kwargs: Any) -> Response:
    """respond() to a GET of /metrics with these headers."""
    return respond(Request("GET", "/metrics", headers, **kwargs), registry)


@pytest.fixture
def registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    Gauge("probe", "P", registry=registry).set(3)
    Counter("jobs", "J", registry=registry).inc()
    return registry


def test_respond_renders_text_by_default(registry: CollectorRegistry) -> None:
    """A plain GET gets the text format with its content type, length and Vary."""
    response = get(registry)
    assert response.status == 200
    assert response.body == render(registry)
    assert response.headers["Content-Type"] == CONTENT_TYPE_TEXT
    assert response.headers["Content-Length"] == str(len(response.body))
    assert response.headers["Vary"] == "Accept, Accept-Encoding"
    assert "Content-Encoding" not in response.headers


def test_respond_gzips_only_when_accepted(registry: CollectorRegistry) -> None:
    """Accept-Encoding: gzip gives a gzip body of the negotiated format."""
    response = get(registry, ("Accept", PROMETHEUS_2_ACCEPT), ("Accept-Encoding", "gzip"))
    assert response.headers["Content-Encoding"] == "gzip"
    assert response.headers["Content-Type"] == CONTENT_TYPE_OPENMETRICS
    assert gzip.decompress(response.body) == render(registry, openmetrics=True)
    assert "Content-Encoding" not in get(registry, ("Accept-Encoding", "gzip;q=0")).headers


def test_repeated_accept_headers_are_read_as_one_list(registry: CollectorRegistry) -> None:
    """Two Accept headers count together (RFC 9110): the second one's higher q wins."""
    response = get(
        registry,
        ("Accept", "text/plain;version=0.0.4;q=0.5"),
        ("accept", "application/openmetrics-text;version=1.0.0"),
    )
    assert response.headers["Content-Type"] == CONTENT_TYPE_OPENMETRICS
    response = get(registry, ("Accept-Encoding", "identity"), ("Accept-Encoding", "gzip"))
    assert response.headers["Content-Encoding"] == "gzip"


def test_head_has_the_get_headers_and_no_body(registry: CollectorRegistry) -> None:
    """HEAD answers with the GET's status and headers (Content-Length too) and no body."""
    full = get(registry)
    head = respond(Request("HEAD", "/metrics"), registry)
    assert (head.status, head.headers, head.body) == (200, full.headers, b"")


def test_other_paths_404_and_methods_405(registry: CollectorRegistry) -> None:
    """Another path is 404 whatever the method; another method on the path is 405 with Allow."""
    missing = respond(Request("GET", "/metric"), registry)
    assert (missing.status, missing.body) == (404, b"not found; metrics are at /metrics\n")
    assert respond(Request("POST", "/other"), registry).status == 404
    post = respond(Request("POST", "/metrics"), registry)
    assert post.status == 405
    assert post.headers["Allow"] == "GET, HEAD"
    assert respond(Request("GET", "/any/path"), registry, path=None).status == 200


def test_name_filter_from_the_query(registry: CollectorRegistry) -> None:
    """name[] query values select families; other parameters are ignored."""
    response = get(registry, query=[("name[]", "jobs_total"), ("other", "probe")])
    assert response.body == render(registry, names=["jobs"])
    assert b"probe" not in response.body


def test_failing_collector_gives_a_one_line_500() -> None:
    """A collector's exception becomes a 500 with a one-line reason."""

    class Broken:
        def collect(self) -> list[Metric]:
            raise RuntimeError("database\ngone")

    registry = CollectorRegistry()
    registry.register(Broken())
    response = get(registry)
    assert response.status == 500
    assert response.body == b"collecting metrics failed: RuntimeError: database gone\n"


def test_a_collector_error_without_a_message_is_still_a_one_line_500() -> None:
    """An exception whose ``__str__`` raises gets a placeholder, not a failed answer."""

    class Unprintable(Exception):
        def __str__(self) -> str:
            raise ValueError("no text")

    class Broken:
        def collect(self) -> list[Metric]:
            raise Unprintable

    registry = CollectorRegistry()
    registry.register(Broken())
    response = get(registry)
    assert response.status == 500
    assert response.body == (
        b"collecting metrics failed: Unprintable: <Unprintable.__str__ failed>\n"
    )
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"


def test_head_answers_have_no_body_whatever_the_status(registry: CollectorRegistry) -> None:
    """HEAD gets a 404 or 500 with its Content-Length and no body, as it gets a 200."""
    missing = respond(Request("HEAD", "/other"), registry)
    assert (missing.status, missing.body) == (404, b"")
    assert int(missing.headers["Content-Length"]) > 0

    class Broken:
        def collect(self) -> list[Metric]:
            raise RuntimeError("gone")

    registry.register(Broken())
    failed = respond(Request("HEAD", "/metrics"), registry)
    assert (failed.status, failed.body) == (500, b"")


header_text = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF), max_size=200)
header_values = st.one_of(
    header_text,
    st.lists(
        st.sampled_from(
            ["application/openmetrics-text", "text/plain", "*/*", "gzip", "identity", "br", ""]
        ).flatmap(
            lambda media: st.builds(
                lambda params: ";".join([media, *params]),
                st.lists(
                    st.sampled_from(
                        [
                            "version=1.0.0",
                            "version=0.0.4",
                            "q=0.5",
                            "q=x",
                            "q=",
                            "escaping=dots",
                            "escaping=",
                            "=",
                            ";",
                        ]
                    ),
                    max_size=3,
                ),
            )
        ),
        max_size=6,
    ).map(",".join),
)


@settings(max_examples=300, deadline=None)
@given(
    method=st.sampled_from(["GET", "HEAD", "POST", "get", "PUT", ""]),
    path=st.sampled_from(["/metrics", "/", "/metrics/", "/other", ""]) | header_text,
    headers=st.lists(
        st.tuples(
            st.sampled_from(["Accept", "accept", "Accept-Encoding", "X-Other"]), header_values
        ),
        max_size=6,
    ),
    query=st.lists(st.tuples(st.sampled_from(["name[]", "name", "x"]), header_text), max_size=5),
)
def test_any_request_gets_a_well_formed_answer(
    method: str, path: str, headers: list[tuple[str, str]], query: list[tuple[str, str]]
) -> None:
    """Whatever the method, path, headers and query, the answer is well formed and consistent."""
    registry = CollectorRegistry()
    Gauge("probe", "P", ["k"], registry=registry).labels("v").set(1)
    response = respond(Request(method, path, headers, query), registry)
    assert response.status in (200, 404, 405)
    assert int(response.headers["Content-Length"]) >= len(response.body)
    if method == "HEAD":
        assert response.body == b""
    if response.status != 200:
        return
    body = response.body
    if response.headers.get("Content-Encoding") == "gzip" and body:
        body = gzip.decompress(body)
    openmetrics = response.headers["Content-Type"].startswith("application/openmetrics-text")
    if method == "GET":
        assert body.endswith(b"# EOF\n") is openmetrics
        assert body.count(b"\n") == len(body.splitlines())  # whole lines only
