"""The metrics endpoint's settings: ``MetricsConfig`` and ``PushgatewayConfig``.

Kept apart from ``bigbrotr.core.metrics`` (which registers the runtime's metric
families) and from ``bigbrotr.core.server`` (which imports aiohttp), so a
configuration can be read and checked without either. ``bigbrotr.core.metrics``
re-exports both, where the seed documents them.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator, model_validator

from bigbrotr.core.config import ConfigPath, Settings
from bigbrotr.ports import valid_port

__all__ = ["MIN_RENDER_TIMEOUT", "MetricsConfig", "PushgatewayConfig"]


#: No render of a real registry, with its thread hand-off, finishes sooner.
MIN_RENDER_TIMEOUT = 0.1


class PushgatewayConfig(Settings):
    """Where ``bigbrotr run --once`` pushes its metrics after the cycle.

    Attributes:
        url: The Pushgateway, ``http(s)://host:port``.
        job: The ``job`` grouping label.
        grouping_key: More grouping labels (values may hold ``/``).
        timeout: Seconds the push may take.
    """

    url: Annotated[str, Field(pattern=r"^https?://[^\s/]+(/\S*)?$")]
    job: Annotated[str, Field(min_length=1)]
    grouping_key: dict[str, str] = Field(default_factory=dict)
    timeout: float = Field(default=10.0, gt=0, le=600)


class MetricsConfig(Settings):
    """Configuration for the Prometheus metrics endpoint.

    Set ``host`` to ``"0.0.0.0"`` in container environments to allow external
    scraping. The endpoint is only started when ``enabled`` is True.

    Attributes:
        enabled: Whether to serve metrics at all.
        port: TCP port, 1024-65535, or 0 for any free port (read the bound one
            back from ``MetricsServer.port``).
        host: Interface to bind; loopback by default so nothing is exposed by
            accident.
        path: URL path of the endpoint.
        max_requests_in_flight: Concurrent scrapes served; more get 503, so a
            scrape storm cannot pile up work in the service.
        render_timeout: Seconds a scrape waits for its render before 503; at
            least 0.1, as a shorter one would answer every scrape 503.
        max_names: Distinct ``name`` values a service may use in
            ``service_gauge`` and in ``service_counter_total`` (each); updates to
            further names are folded into ``name="__overflow__"`` and counted in
            ``service_name_overflow_updates_total``.
        max_connections: Open connections to the endpoint; more are closed at
            once, so no client can exhaust the process's file descriptors.
        idle_timeout: Seconds a connection may send nothing (idle keep-alive,
            or a request never finished) before it is closed; longer than
            ``render_timeout``, so no scrape is cut while it waits.
        web_config_file: An exporter-toolkit web configuration file (TLS,
            basic auth, headers). Written in a YAML file (``load_config``), it
            is relative to that file, as the paths inside it are relative to
            it; given in Python, to the working directory.
        unprotected_paths: Paths served without basic auth (say, health
            probes for a kubelet); every other path needs it. Kept here, not
            in the web config file, so that file stays valid for promtool.
        pushgateway: Where ``run --once`` pushes its metrics, or None.
    """

    enabled: bool = False
    port: int = 8000
    host: Annotated[str, Field(min_length=1)] = "127.0.0.1"
    path: str = "/metrics"
    max_requests_in_flight: int = Field(default=10, ge=1, le=10_000)
    render_timeout: float = Field(default=10.0, le=600)
    max_names: int = Field(default=1000, ge=10, le=1_000_000)
    max_connections: int = Field(default=100, ge=1, le=100_000)
    idle_timeout: float = Field(default=15.0, gt=0, le=3600)
    web_config_file: ConfigPath | None = None
    unprotected_paths: frozenset[str] = frozenset()
    pushgateway: PushgatewayConfig | None = None

    @field_validator("port")
    @classmethod
    def _check_port(cls, port: int) -> int:
        if not valid_port(port):
            raise ValueError("port must be 0 (any free port) or between 1024 and 65535")
        return port

    @field_validator("render_timeout")
    @classmethod
    def _usable_render_timeout(cls, timeout: float) -> float:
        if not timeout >= MIN_RENDER_TIMEOUT:
            raise ValueError(
                f"render_timeout must be at least {MIN_RENDER_TIMEOUT} s "
                "(shorter would answer every scrape 503)"
            )
        return timeout

    @model_validator(mode="after")
    def _pushgateway_needs_metrics(self) -> MetricsConfig:
        if self.pushgateway is not None and not self.enabled:
            raise ValueError(
                "pushgateway needs enabled: true (it turns recording on; --once serves nothing)"
            )
        return self

    @model_validator(mode="after")
    def _idle_outlasts_render(self) -> MetricsConfig:
        if self.idle_timeout <= self.render_timeout:
            raise ValueError(
                f"idle_timeout ({self.idle_timeout}) must be longer than render_timeout "
                f"({self.render_timeout}), or a slow render would be cut off"
            )
        return self

    @field_validator("unprotected_paths")
    @classmethod
    def _check_unprotected(cls, paths: frozenset[str]) -> frozenset[str]:
        for path in paths:
            if not path.startswith("/"):
                raise ValueError(f"unprotected path {path!r} must start with '/'")
        return paths

    @field_validator("path")
    @classmethod
    def _check_path(cls, path: str) -> str:
        if not path.startswith("/"):
            raise ValueError("path must start with '/'")
        if "?" in path or "#" in path:
            raise ValueError("path must not contain '?' or '#' (no request could reach it)")
        return path
