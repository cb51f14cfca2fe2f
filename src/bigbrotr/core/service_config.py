"""The settings every service has, and loading them from a YAML file.

``BaseServiceConfig`` is what a service's ``CONFIG_CLASS`` extends; it is
re-exported by ``bigbrotr.core.base_service``, where the seed documents it.
"""

from __future__ import annotations

import os
from typing import Any, Self

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from bigbrotr.core.config import CONFIG_DIRECTORY, Settings, describe_validation_error
from bigbrotr.core.metrics_config import MetricsConfig
from bigbrotr.core.schedule import Every, Schedule, cron
from bigbrotr.core.yaml import ConfigFileError, load_yaml_with_lines

__all__ = ["MIN_INTERVAL", "ONE_WEEK_SECONDS", "BaseServiceConfig", "load_config"]

ONE_WEEK_SECONDS = 604_800.0
#: A shorter interval would keep the loop busy starting cycles.
MIN_INTERVAL = 0.01


class BaseServiceConfig(Settings):
    """Settings every service has; subclasses add their own fields.

    Attributes:
        interval: Seconds between cycle starts (start-to-start, so run time
            does not add drift); at least 0.01, as shorter busy-loops.
        schedule: A five-field cron expression (or ``@hourly``, ``@daily``,
            ``@weekly``, ``@monthly``) instead of ``interval``, on the wall
            clock of ``timezone``.
        timezone: The IANA time zone ``schedule`` is read in.
        jitter: Each planned start is delayed by a random amount in
            ``[0, jitter)`` seconds, so a fleet on one schedule does not start
            at one instant; shorter than the shortest gap between starts.
        run_at_start: Whether a cycle runs as soon as the service starts; by
            default yes with ``interval``, no with ``schedule``.
        max_consecutive_failures: Failed cycles in a row after which the loop
            stops; 0 means never stop.
        cycle_timeout: Seconds a cycle may run before it is cancelled and
            counted failed (``errors_TimeoutError``); None for no limit.
        shutdown_grace: Seconds a cycle in progress may go on after a shutdown
            request before it is cancelled; under Kubernetes' default 30 s.
        loop_block_threshold: Seconds the event loop may be blocked before the
            watchdog logs a WARNING with where it is stuck; 0 turns the
            watchdog off (no ``event_loop_lag_seconds`` either).
        stale_after: Seconds without a successful cycle (or in one cycle)
            after which ``/readyz`` says not ready; by default twice the
            interval plus the cycle timeout (or one more interval).
        metrics: The Prometheus endpoint.
    """

    interval: float = Field(default=300.0, le=ONE_WEEK_SECONDS)
    schedule: str | None = None
    timezone: str = "UTC"
    jitter: float = Field(default=0.0, ge=0, le=ONE_WEEK_SECONDS)
    run_at_start: bool | None = None
    max_consecutive_failures: int = Field(default=5, ge=0, le=100)
    cycle_timeout: float | None = Field(default=None, gt=0, le=ONE_WEEK_SECONDS)
    shutdown_grace: float = Field(default=25.0, ge=0, le=3600)
    loop_block_threshold: float = Field(default=1.0, ge=0, le=3600)
    stale_after: float | None = Field(default=None, gt=0, le=ONE_WEEK_SECONDS)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)

    @field_validator("interval")
    @classmethod
    def _usable_interval(cls, interval: float) -> float:
        if not interval >= MIN_INTERVAL:
            raise ValueError(f"interval must be at least {MIN_INTERVAL} s (shorter busy-loops)")
        return interval

    @model_validator(mode="before")
    @classmethod
    def _one_way_to_schedule(cls, data: Any) -> Any:
        """``interval`` or ``schedule``, not both; ``timezone`` only with ``schedule``."""
        if not isinstance(data, dict) or data.get("schedule") is None:
            if isinstance(data, dict) and "timezone" in data:
                raise _field_error("timezone", "applies to a cron schedule only", data["timezone"])
            return data
        if "interval" in data:
            raise _field_error("schedule", "give interval or schedule, not both", data["schedule"])
        return data

    @model_validator(mode="after")
    def _usable_schedule(self) -> Self:
        try:
            schedule = self.cycle_schedule()
        except ValueError as exc:  # the expression, or the zone
            unknown_zone = str(exc).startswith("unknown time zone")
            field = "timezone" if unknown_zone else "schedule"
            raise _field_error(field, str(exc), getattr(self, field)) from None
        if self.jitter and self.jitter >= schedule.shortest_gap:
            raise _field_error(
                "jitter",
                f"must be shorter than the shortest gap between planned starts"
                f" ({schedule.shortest_gap:g} s)",
                self.jitter,
            )
        return self

    def cycle_schedule(self) -> Schedule:
        """When cycles are planned: ``Every(interval)``, or the cron ``schedule``."""
        if self.schedule is None:
            return Every(self.interval)
        return cron(self.schedule, self.timezone)

    def runs_at_start(self) -> bool:
        """Whether a cycle runs at start (``run_at_start``, or the schedule's default)."""
        return self.run_at_start if self.run_at_start is not None else self.schedule is None


def _field_error(field: str, message: str, value: object) -> ValidationError:
    """A validation error on ``field`` (a check across fields, placed where it belongs)."""
    error = PydanticCustomError("schedule", message)
    return ValidationError.from_exception_data(
        "BaseServiceConfig", [InitErrorDetails(type=error, loc=(field,), input=value)]
    )


def load_config(
    config_class: type[BaseServiceConfig], path: str | os.PathLike[str]
) -> BaseServiceConfig:
    """Load and validate a YAML configuration file.

    Files it names (``ConfigPath`` fields, such as ``metrics.web_config_file``)
    are relative to the file's own directory, as the paths inside an
    exporter-toolkit web config are relative to that file: a configuration
    means the same from whatever directory the service is started.

    Args:
        config_class: The model to validate against.
        path: The YAML file.

    Returns:
        An instance of ``config_class``.

    Raises:
        FileNotFoundError: If the file does not exist.
        ConfigFileError: If the file cannot be parsed or a value is invalid;
            the message names the file and the field or line (and, for an
            unknown key, the closest known one).
    """
    data, lines = load_yaml_with_lines(path)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        return config_class.model_validate(data, context={CONFIG_DIRECTORY: directory})
    except ValidationError as exc:
        message = describe_validation_error(exc, model=config_class, lines=lines)
        raise ConfigFileError(f"{path}: {message}") from exc
