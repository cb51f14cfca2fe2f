"""What a service's cycles have been: counts, the failure streak, the last error, recent cycles.

The cycle loop tells it each start and outcome; health (``/readyz``) and the
status page read it. Written on the service's event loop and read from the
server's thread: each event replaces one frozen ``Cycles`` whole, so a reader
that takes ``history.now`` once sees one moment's counts, streak, error and
records together, never half of an update.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from bigbrotr.core.clock import Clock

__all__ = [
    "HISTORY",
    "CycleHistory",
    "CycleRecord",
    "Cycles",
    "LastError",
    "message_of",
    "shortened",
]

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


def message_of(error: BaseException) -> str:
    """``str(error)``, or a placeholder when its ``__str__`` raises (as tracebacks do).

    A service's exception is the service's code: one whose message cannot be
    made must still be counted and logged, not end the service.
    """
    try:
        return str(error)
    except Exception:
        return f"<{type(error).__name__}.__str__ failed>"


@dataclass(frozen=True)
class Cycles:
    """A service's cycles at one moment, in the clock's time (monotonic; Unix in records).

    Attributes:
        started_at: When the service started.
        succeeded: Successful cycles.
        failed: Failed cycles (a cycle cut by the shutdown grace, or cancelled,
            is neither).
        consecutive_failures: The current failure streak.
        last_success_at: When the last successful cycle ended, or None.
        cycle_started_at: When the cycle in progress started, or None.
        last_error: The latest failure, or None.
        recent: The last ``HISTORY`` cycles, oldest first.
    """

    started_at: float
    succeeded: int = 0
    failed: int = 0
    consecutive_failures: int = 0
    last_success_at: float | None = None
    cycle_started_at: float | None = None
    last_error: LastError | None = None
    recent: tuple[CycleRecord, ...] = ()


class CycleHistory:
    """Keeps ``now``, a ``Cycles`` replaced whole by each event; see the module docstring."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.now = Cycles(clock.monotonic())

    def start(self) -> None:
        """The service starts now: freshness is measured from here until a success."""
        self.now = replace(self.now, started_at=self._clock.monotonic())

    def cycle_started(self) -> None:
        """A cycle starts now."""
        self.now = replace(self.now, cycle_started_at=self._clock.monotonic())

    def cycle_ended(self) -> None:
        """The cycle in progress ended, whatever its outcome (or none: cancelled, cut)."""
        self.now = replace(self.now, cycle_started_at=None)

    def cycle_succeeded(self, duration: float) -> None:
        """The cycle in progress succeeded after ``duration`` seconds (and so ended)."""
        now = self.now
        self.now = replace(
            now,
            cycle_started_at=None,
            last_success_at=self._clock.monotonic(),
            consecutive_failures=0,
            succeeded=now.succeeded + 1,
            recent=_kept(now.recent, CycleRecord(self._clock.time(), duration, True)),
        )

    def cycle_failed(self, error: Exception, duration: float) -> None:
        """The cycle in progress failed with ``error`` after ``duration`` seconds (and ended)."""
        now, kind, at = self.now, type(error).__name__, self._clock.time()
        self.now = replace(
            now,
            cycle_started_at=None,
            last_error=LastError(kind, shortened(message_of(error)), at),
            failed=now.failed + 1,
            consecutive_failures=now.consecutive_failures + 1,
            recent=_kept(now.recent, CycleRecord(at, duration, False, kind)),
        )


def _kept(recent: tuple[CycleRecord, ...], record: CycleRecord) -> tuple[CycleRecord, ...]:
    """``recent`` with ``record`` added, the oldest dropped past ``HISTORY``."""
    return (*recent[-(HISTORY - 1) :], record)
