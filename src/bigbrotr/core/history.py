"""What a service's cycles have been: counts, the failure streak, the last error, recent cycles.

The cycle loop tells it each start and outcome; health (``/readyz``) and the
status page read it. Written on the service's event loop and read from the
server's thread: every field is replaced whole, never mutated in place, so a
reader sees one cycle's state or the next's, never half of one.
"""

from __future__ import annotations

from dataclasses import dataclass

from bigbrotr.core.clock import Clock

__all__ = ["HISTORY", "CycleHistory", "CycleRecord", "LastError", "shortened"]

#: How many recent cycles the page charts.
HISTORY = 60


@dataclass(frozen=True)
class CycleRecord:
    """One finished cycle.

    Attributes:
        ended_at: Unix time it ended.
        duration: Seconds it ran.
        ok: Whether it succeeded.
        error: The exception type of a failed cycle.
    """

    ended_at: float
    duration: float
    ok: bool
    error: str = ""


@dataclass(frozen=True)
class LastError:
    """The most recent failure: exception type, message (shortened), Unix time."""

    type: str
    message: str
    at: float


_MAX_ERROR_TEXT = 1000


def shortened(text: str) -> str:
    """At most 1000 characters: an exception message can be a whole payload.

    Lone surrogates (``os.fsdecode`` of a file name that is not UTF-8) become
    escapes, so the message can be sent as UTF-8 (the status page, JSON logs).
    """
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(text) <= _MAX_ERROR_TEXT:
        return text
    return f"{text[:_MAX_ERROR_TEXT]}... ({len(text) - _MAX_ERROR_TEXT} more characters)"


class CycleHistory:
    """A service's cycles so far, in the clock's time (monotonic, and Unix for records).

    Attributes:
        started_at: When the service started (monotonic).
        succeeded: Successful cycles.
        failed: Failed cycles (cycles cut by the shutdown grace are neither).
        consecutive_failures: The current failure streak.
        last_success_at: When the last successful cycle ended (monotonic), or None.
        cycle_started_at: When the cycle in progress started (monotonic), or None.
        last_error: The latest failure, or None.
        recent: The last ``HISTORY`` cycles, oldest first.
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.started_at = clock.monotonic()
        self.succeeded = self.failed = self.consecutive_failures = 0
        self.last_success_at: float | None = None
        self.cycle_started_at: float | None = None
        self.last_error: LastError | None = None
        self.recent: tuple[CycleRecord, ...] = ()

    def start(self) -> None:
        """The service starts now: freshness is measured from here until a success."""
        self.started_at = self._clock.monotonic()

    def cycle_started(self) -> None:
        """A cycle starts now."""
        self.cycle_started_at = self._clock.monotonic()

    def cycle_ended(self) -> None:
        """The cycle in progress ended, whatever its outcome (or none: cancelled, cut)."""
        self.cycle_started_at = None

    def cycle_succeeded(self, duration: float) -> None:
        """The cycle in progress succeeded after ``duration`` seconds (and so ended)."""
        self.cycle_started_at = None
        self.last_success_at = self._clock.monotonic()
        self.consecutive_failures = 0
        self.succeeded += 1
        self._remember(CycleRecord(self._clock.time(), duration, True))

    def cycle_failed(self, error: Exception, duration: float) -> None:
        """The cycle in progress failed with ``error`` after ``duration`` seconds (and ended)."""
        kind = type(error).__name__
        # The error first: a status page read meanwhile never shows a streak without it.
        self.last_error = LastError(kind, shortened(str(error)), self._clock.time())
        self.cycle_started_at = None
        self.failed += 1
        self.consecutive_failures += 1
        self._remember(CycleRecord(self._clock.time(), duration, False, kind))

    def _remember(self, record: CycleRecord) -> None:
        self.recent = (*self.recent[-(HISTORY - 1) :], record)
