import os

import pytest

from bigbrotr.core.history import CycleHistory, shortened
from bigbrotr.core.status import HISTORY, CycleRecord, LastError
from bigbrotr.testing import FakeClock

WALL = 1_700_000_000.0


@pytest.fixture
def clock() -> FakeClock:
    """Monotonic time from 1000 s, wall time from 1_700_000_000 s."""
    return FakeClock(start=1000.0, wall_start=WALL)


def test_a_new_history_has_no_cycles_and_starts_when_made(clock: FakeClock) -> None:
    """Nothing counted, nothing running, no error; freshness runs from when it was made."""
    history = CycleHistory(clock)
    assert (history.now.succeeded, history.now.failed, history.now.consecutive_failures) == (
        0,
        0,
        0,
    )
    assert (history.now.last_success_at, history.now.cycle_started_at) == (None, None)
    assert (history.now.last_error, history.now.recent) == (None, ())
    assert history.now.started_at == 1000.0


def test_start_moves_the_start_to_now(clock: FakeClock) -> None:
    """A service built early and started later is fresh from its start, not from its build."""
    history = CycleHistory(clock)
    clock.advance(30)
    history.start()
    assert history.now.started_at == 1030.0


def test_a_success_is_counted_timed_and_remembered(clock: FakeClock) -> None:
    """The cycle in progress shows until it ends; then its success (monotonic) and record (wall)."""
    history = CycleHistory(clock)
    clock.advance(10)
    history.cycle_started()
    assert history.now.cycle_started_at == 1010.0
    clock.advance(2)
    history.cycle_succeeded(2.0)
    assert history.now.cycle_started_at is None
    assert (history.now.succeeded, history.now.failed, history.now.last_success_at) == (
        1,
        0,
        1012.0,
    )
    assert history.now.recent == (CycleRecord(WALL + 12, 2.0, True),)


def test_failures_count_a_streak_that_a_success_resets_keeping_the_last_error(
    clock: FakeClock,
) -> None:
    """Each failure adds to the streak and replaces the last error; a success ends the streak."""
    history = CycleHistory(clock)
    history.cycle_started()
    history.cycle_failed(ValueError("bad input"), 0.5)
    clock.advance(5)
    history.cycle_failed(KeyError("missing"), 0.25)
    assert (history.now.failed, history.now.consecutive_failures) == (2, 2)
    assert history.now.last_error == LastError("KeyError", "'missing'", WALL + 5)
    assert history.now.cycle_started_at is None
    assert history.now.last_success_at is None
    history.cycle_succeeded(1.0)
    assert (history.now.succeeded, history.now.failed, history.now.consecutive_failures) == (
        1,
        2,
        0,
    )
    assert history.now.last_error == LastError("KeyError", "'missing'", WALL + 5)
    assert [(r.ok, r.error) for r in history.now.recent] == [
        (False, "ValueError"),
        (False, "KeyError"),
        (True, ""),
    ]


class ProbingClock(FakeClock):
    """A fake clock that notes what a reader would see each time the history reads the time."""

    def __init__(self) -> None:
        super().__init__()
        self.history: CycleHistory | None = None
        self.seen: list[tuple[int, str | None]] = []

    def time(self) -> float:
        if self.history is not None:
            error = self.history.now.last_error
            self.seen.append(
                (self.history.now.consecutive_failures, error.message if error else None)
            )
        return super().time()


def test_the_error_is_in_place_before_the_streak_counts_it() -> None:
    """A reader between two steps (the status page's thread) sees no streak without its error."""
    clock = ProbingClock()
    history = clock.history = CycleHistory(clock)
    history.cycle_failed(ValueError("one"), 0.1)
    history.cycle_failed(ValueError("two"), 0.1)
    assert clock.seen == [(0, None), (1, "one")]  # each failure is one whole update
    assert all(message is not None for streak, message in clock.seen if streak)


def test_error_messages_are_shortened_and_made_sendable(clock: FakeClock) -> None:
    """A lone surrogate becomes an escape; a payload-sized message is cut, saying how much."""
    history = CycleHistory(clock)
    history.cycle_failed(FileNotFoundError(os.fsdecode(b"/data/caf\xe9.csv")), 0.1)
    assert history.now.last_error is not None
    assert history.now.last_error.message == "/data/caf\\udce9.csv"
    history.cycle_failed(RuntimeError("x" * 1500), 0.1)
    assert history.now.last_error.message == "x" * 1000 + "... (500 more characters)"


class Unprintable(Exception):
    """An exception whose message cannot be made."""

    def __str__(self) -> str:
        raise ValueError("no text for this one")


def test_an_error_whose_message_cannot_be_made_is_still_counted(clock: FakeClock) -> None:
    """Its ``__str__`` raising does not escape (it ended the service before)."""
    history = CycleHistory(clock)
    history.cycle_failed(Unprintable(), 0.1)
    assert history.now.failed == 1
    assert history.now.last_error is not None
    assert history.now.last_error.message == "<Unprintable.__str__ failed>"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ""),
        ("y" * 1000, "y" * 1000),
        ("y" * 1001, "y" * 1000 + "... (1 more characters)"),
        ("caf\udce9", "caf\\udce9"),
        ("\ud800" * 300, "\\ud800" * 166 + "\\ud8... (800 more characters)"),
    ],
    ids=["empty", "at the limit", "one past", "lone surrogate", "escapes count"],
)
def test_shortened_keeps_at_most_a_thousand_characters(text: str, expected: str) -> None:
    """Up to 1000 characters pass as they are; escapes count towards the limit."""
    assert shortened(text) == expected
    shortened(text).encode("utf-8")  # no lone surrogate is left to make this raise


def test_recent_keeps_the_last_history_cycles(clock: FakeClock) -> None:
    """Past HISTORY cycles, the oldest are dropped; the newest is last."""
    history = CycleHistory(clock)
    for number in range(HISTORY + 5):
        history.cycle_succeeded(float(number))
    assert len(history.now.recent) == HISTORY
    assert [r.duration for r in history.now.recent] == [float(n) for n in range(5, HISTORY + 5)]
    assert history.now.succeeded == HISTORY + 5


def test_a_cycle_that_ends_without_outcome_leaves_the_counts(clock: FakeClock) -> None:
    """Cut by the grace or cancelled: no longer in progress, neither success nor failure."""
    history = CycleHistory(clock)
    history.cycle_failed(ValueError("earlier"), 0.1)
    before = (
        history.now.succeeded,
        history.now.failed,
        history.now.consecutive_failures,
        history.now.recent,
    )
    history.cycle_started()
    clock.advance(30)
    history.cycle_ended()
    assert history.now.cycle_started_at is None
    assert (
        history.now.succeeded,
        history.now.failed,
        history.now.consecutive_failures,
        history.now.recent,
    ) == (before)
    assert history.now.last_error == LastError("ValueError", "earlier", WALL)
    assert history.now.last_success_at is None
