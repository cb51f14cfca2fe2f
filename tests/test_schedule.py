"""``core.schedule``: planned starts for an interval and for cron, across daylight-saving days."""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bigbrotr.core.schedule import MACROS, Every, cron


def test_every_counts_whole_intervals_from_the_start() -> None:
    """An interval's next start is one interval on; missed starts are whole intervals."""
    every = Every(10)
    assert (every.after(100), every.shortest_gap, every.longest_gap) == (110, 10, 10)
    assert [every.missed(100, until) for until in (109.9, 110, 125, 130)] == [0, 1, 2, 3]
    assert every.text == "every 10 s" and not every.wall


def local(moment: float, zone: str) -> str:
    return datetime.fromtimestamp(moment, ZoneInfo(zone)).isoformat()


def starts(expression: str, zone: str, since: datetime, count: int) -> list[str]:
    schedule, moment, seen = cron(expression, zone), since.timestamp(), []
    for _ in range(count):
        moment = schedule.after(moment)
        seen.append(local(moment, zone))
    return seen


# Each planned start as written by hand from the zone's rules (2026: the US changes on
# 8 March and 1 November, the EU on 29 March and 25 October), not computed by cronsim.
@pytest.mark.parametrize(
    ("zone", "day", "expression", "expected"),
    [
        # spring forward: 02:00 -> 03:00
        ("America/New_York", "2026-03-07", "0 3 * * *",
         ["2026-03-08T03:00:00-04:00", "2026-03-09T03:00:00-04:00"]),
        ("America/New_York", "2026-03-07", "30 2 * * *",  # 02:30 does not exist on the 8th
         ["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"]),
        ("Europe/Berlin", "2026-03-28", "30 2 * * *",
         ["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"]),
        ("Europe/Berlin", "2026-03-28", "0 3 * * *",
         ["2026-03-29T03:00:00+02:00", "2026-03-30T03:00:00+02:00"]),
        # fall back: 02:00 -> 01:00 (New York), 03:00 -> 02:00 (Berlin)
        ("America/New_York", "2026-10-31", "30 1 * * *",  # 01:30 happens twice on the 1st
         ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]),
        ("America/New_York", "2026-10-31", "0 3 * * *",
         ["2026-11-01T03:00:00-05:00", "2026-11-02T03:00:00-05:00"]),
        ("Europe/Berlin", "2026-10-24", "30 2 * * *",  # 02:30 happens twice on the 25th
         ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]),
        ("Europe/Berlin", "2026-10-24", "0 3 * * *",
         ["2026-10-25T03:00:00+01:00", "2026-10-26T03:00:00+01:00"]),
    ],
)  # fmt: skip
def test_a_daily_job_runs_once_on_each_daylight_saving_day(
    zone: str, day: str, expression: str, expected: list[str]
) -> None:
    """Once on the day its time does not exist, once on the day it happens twice."""
    evening = datetime.fromisoformat(f"{day}T20:00:00").replace(tzinfo=ZoneInfo(zone))
    assert starts(expression, zone, evening, 2) == expected
    # and never twice in the repeated hour: the one after the first is the next day's
    schedule = cron(expression, zone)
    first = schedule.after(evening.timestamp())
    assert schedule.missed(first, first + 23 * 3600) == 0


def test_daily_gaps_in_a_zone_with_daylight_saving_are_23_and_25_hours() -> None:
    """The shortest and longest gaps follow the wall clock (used for jitter and staleness)."""
    daily = cron("0 3 * * *", "Europe/Berlin")
    assert (daily.shortest_gap, daily.longest_gap) == (23 * 3600, 25 * 3600)
    weekdays = cron("*/15 9-17 * * 1-5")  # Friday 17:45 to Monday 09:00
    assert (weekdays.shortest_gap, weekdays.longest_gap) == (
        900,
        timedelta(hours=63.25).total_seconds(),
    )
    assert daily.text == "0 3 * * * (Europe/Berlin)" and daily.wall


@pytest.mark.parametrize("macro", sorted(MACROS))
def test_the_at_forms_are_their_five_fields(macro: str) -> None:
    since = datetime(2026, 5, 5, 12, 34, tzinfo=ZoneInfo("UTC"))
    assert starts(macro, "UTC", since, 3) == starts(MACROS[macro], "UTC", since, 3)


def test_missed_counts_planned_starts_in_a_window() -> None:
    """Starts in (since, until]: a start exactly at `until` counts, one at `since` does not."""
    every_ten_minutes = cron("*/10 * * * *")
    since = datetime(2026, 1, 1, tzinfo=ZoneInfo("UTC")).timestamp()
    assert every_ten_minutes.missed(since, since + 599) == 0
    assert every_ten_minutes.missed(since, since + 600) == 1
    assert every_ten_minutes.missed(since, since + 86400) == 144


@pytest.mark.parametrize(
    ("expression", "zone", "message"),
    [
        ("0 3 * *", "UTC", "expected five fields, minute hour day month weekday"),
        ("61 * * * *", "UTC", "Bad minute"),
        ("@reboot", "UTC", "or one of @hourly"),
        ("0 3 * * *", "Mars/Olympus", "unknown time zone 'Mars/Olympus': expected an IANA name"),
        ("0 3 * * *", "../etc/passwd", "unknown time zone"),
    ],
)
def test_a_bad_expression_or_zone_says_what_was_expected(
    expression: str, zone: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        cron(expression, zone)
