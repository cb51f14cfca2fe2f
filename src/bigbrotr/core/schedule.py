"""When a service's cycles are planned to start: every N seconds, or on a cron expression.

Pure: a ``Schedule`` answers "the first planned start after this moment" and
"how many planned starts lie between these two", on its own time base. An
``Every`` schedule counts on the monotonic clock, start to start (as ``interval``
always has); a ``Cron`` schedule reads the wall clock in its time zone, so
``0 3 * * *`` is 03:00 there on every calendar day, across daylight-saving
changes. The cycle loop decides what to do with late and missed starts.

Cron expressions are parsed and stepped by cronsim (healthchecks.io's; see
``Cron``). A day whose time does not exist (the clocks go forward) runs once,
at the first minute after the gap; a day whose time happens twice (the
clocks go back) runs once, at the first.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

__all__ = ["MACROS", "Cron", "Every", "Schedule", "cron", "time_zone"]

#: The ``@`` forms, written as the five fields they stand for (as in Debian's cron).
MACROS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
#: How far ahead a cron schedule's gaps are measured: a year, or this many starts
#: (enough for a weekly pattern of every minute in working hours).
_GAP_HORIZON_SECONDS = 366 * 86_400
_GAP_HORIZON_STARTS = 5_000
#: At most this many missed starts are counted one by one (a year of minutes would
#: take a while); past it the count is an estimate from the shortest gap.
_MAX_COUNTED = 10_000


class Schedule(Protocol):
    """Planned starts on one time base (see the module docstring)."""

    @property
    def wall(self) -> bool:
        """Whether moments are Unix time (cron) rather than monotonic seconds."""

    @property
    def text(self) -> str:
        """The schedule in words, for people (``every 60 s``)."""

    @property
    def shortest_gap(self) -> float:
        """The shortest time between two planned starts (jitter stays under it)."""

    @property
    def longest_gap(self) -> float:
        """The longest time between two planned starts (staleness is measured by it)."""

    def after(self, moment: float) -> float:
        """The first planned start strictly after ``moment``."""

    def missed(self, since: float, until: float) -> int:
        """How many planned starts lie in ``(since, until]``."""


@dataclass(frozen=True)
class Every:
    """Every ``seconds``, start to start, on the monotonic clock."""

    seconds: float
    wall: bool = field(default=False, init=False)

    @property
    def text(self) -> str:
        """``every 60 s``."""
        return f"every {self.seconds:g} s"

    @property
    def shortest_gap(self) -> float:
        """The interval."""
        return self.seconds

    @property
    def longest_gap(self) -> float:
        """The interval."""
        return self.seconds

    def after(self, moment: float) -> float:
        """One interval after ``moment``."""
        return moment + self.seconds

    def missed(self, since: float, until: float) -> int:
        """Whole intervals from ``since`` to ``until``."""
        return max(0, math.floor((until - since) / self.seconds))


@dataclass(frozen=True)
class Cron:
    """A five-field cron expression, in an IANA time zone, on the wall clock.

    Build it with ``cron()``, which checks both and measures the gaps.
    cronsim was chosen over croniter: it is maintained, small and strict (it
    refuses what Debian's cron refuses), steps about seven times faster here
    (10 µs a start, which matters when measuring a year of gaps), and its
    handling of daylight-saving days is documented and matches cron's.

    Attributes:
        expression: As written (an ``@`` form stays as written).
        zone: The time zone's name.
        shortest_gap: Measured over a year (or 5,000 starts).
        longest_gap: Measured the same way.
    """

    expression: str
    zone: str
    shortest_gap: float
    longest_gap: float
    wall: bool = field(default=True, init=False)

    @property
    def text(self) -> str:
        """``0 3 * * * (Europe/Berlin)``."""
        return f"{self.expression} ({self.zone})"

    def after(self, moment: float) -> float:
        """The next planned start after ``moment`` (Unix time), in Unix time."""
        return next(self._starts(moment))

    def missed(self, since: float, until: float) -> int:
        """Planned starts in ``(since, until]``, counted (estimated past 10,000)."""
        count = 0
        for start in self._starts(since):
            if start > until:
                return count
            count += 1
            if count >= _MAX_COUNTED:
                return count + math.floor((until - start) / self.shortest_gap)
        return count  # pragma: no cover - a cron schedule never ends

    def _starts(self, moment: float) -> Iterator[float]:
        zone = ZoneInfo(self.zone)
        starts = CronSim(MACROS.get(self.expression, self.expression), _at(moment, zone))
        return (start.timestamp() for start in starts)


def _at(moment: float, zone: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(moment, zone)


def time_zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``.

    Raises:
        ValueError: Not a zone this machine's time zone database knows.
    """
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r}: expected an IANA name such as UTC or Europe/Berlin"
        ) from None


@functools.lru_cache(maxsize=64)  # measuring gaps takes up to 0.1 s; configs repeat
def cron(expression: str, zone: str = "UTC") -> Cron:
    """A checked ``Cron`` schedule, its gaps measured.

    Raises:
        ValueError: The expression is not five cron fields (or an ``@`` form),
            or the time zone is unknown; the message says what was expected.
    """
    tz = time_zone(zone)
    expression = " ".join(expression.split())
    fields = MACROS.get(expression, expression)
    start = datetime(2025, 1, 1, tzinfo=tz)  # a fixed year: the gaps do not depend on today
    try:
        starts = CronSim(fields, start)
        previous = next(starts)
    except CronSimError as exc:
        raise ValueError(
            f"not a cron expression ({exc}): expected five fields, minute hour day month"
            f" weekday, such as '0 3 * * *', or one of {', '.join(MACROS)}"
        ) from None
    except StopIteration:
        raise ValueError(f"cron expression {expression!r} never matches a date") from None
    shortest, longest = math.inf, 0.0
    end = previous.timestamp() + _GAP_HORIZON_SECONDS
    for _ in range(_GAP_HORIZON_STARTS):
        following = next(starts)
        gap = following.timestamp() - previous.timestamp()
        shortest, longest = min(shortest, gap), max(longest, gap)
        if following.timestamp() > end:
            break
        previous = following
    return Cron(expression, zone, shortest, longest)
