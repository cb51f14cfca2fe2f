import io
import json
import logging

from bigbrotr.core.logger import Seen, Throttle, get_logger
from bigbrotr.testing import FakeClock
from tests.support.logs import CapturedLogs


def test_json_lines_carry_the_service_name(log_stream: io.StringIO) -> None:
    """Every JSON line, ours or a library's, has the service field."""
    get_logger("ours").info("hello", answer=42)
    logging.getLogger("aiohttp.server").warning("from a library")
    lines = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["hello", "from a library"]
    assert all(line["service"] == "logtest" for line in lines)
    assert lines[0]["answer"] == 42
    assert lines[0]["level"] == "info"
    assert lines[1]["level"] == "warning"


def test_text_format_is_human_readable_with_service(captured_logs: CapturedLogs) -> None:
    """The default text format is one readable line with key=value pairs."""
    with captured_logs("textsvc", "INFO", "text") as stream:
        get_logger("ours").info("cycle done", items=3)
    line = stream.getvalue().strip()
    assert "cycle done" in line
    assert "items=3" in line
    assert "service=textsvc" in line
    assert not line.startswith("{")


def test_level_filters_lower_levels(captured_logs: CapturedLogs) -> None:
    """Below the configured level nothing is written."""
    with captured_logs("quiet", "WARNING") as stream:
        get_logger("ours").info("hidden")
        get_logger("ours").warning("shown")
    events = [json.loads(line)["event"] for line in stream.getvalue().splitlines()]
    assert events == ["shown"]


def test_logger_made_before_configuration_follows_it(captured_logs: CapturedLogs) -> None:
    """A module-level logger created before configure_logging still uses it."""
    early = get_logger("early", component="x")
    with captured_logs("later") as stream:
        early.info("late line")
    line = json.loads(stream.getvalue())
    assert line["component"] == "x"
    assert line["service"] == "later"


def test_throttle_logs_the_first_of_each_kind_then_once_per_interval() -> None:
    """Throttle: first of a kind logs; repeats wait for `every` and report how many."""
    clock = FakeClock(start=0.0)
    throttle = Throttle(every=60.0, max_kinds=2, now=clock.monotonic)
    assert throttle.note("a") == Seen(log=True, first=True, count=1, since=1)
    assert throttle.note("a").log is False
    clock.advance(61.0)
    assert throttle.note("a") == Seen(log=True, first=False, count=3, since=2)
    assert throttle.note("b").first
    assert [throttle.note("c").first for _ in range(2)] == [True, True]  # past max_kinds


def test_throttle_without_interval_logs_each_kind_once() -> None:
    """Throttle(every=None): one line per kind, counts still kept."""
    throttle = Throttle()
    assert [throttle.note("x").log for _ in range(3)] == [True, False, False]
    assert throttle.note("x").count == 4


def test_throttle_can_drop_kinds_it_no_longer_remembers() -> None:
    """log_unremembered=False: past max_kinds, new kinds are not logged (kinds from data)."""
    throttle = Throttle(max_kinds=1, log_unremembered=False)
    assert throttle.note("first").log
    assert [throttle.note(f"new {n}").log for n in range(3)] == [False, False, False]


def test_text_logs_escape_control_characters_in_every_value(captured_logs: CapturedLogs) -> None:
    """A value, the event's words or a traceback's message cannot forge lines or colours."""
    forged = "bad\n2026-01-01T00:00:00Z [info     ] all good\x1b[32m"
    with captured_logs("escapes", "INFO", "text") as stream:
        log = get_logger("escapes")
        log.error(f"cycle failed: {forged}", error=forged)
        try:
            raise RuntimeError(forged)
        except RuntimeError as exc:
            log.error("cycle failed", exc_info=exc)
    text = stream.getvalue()
    assert "\x1b" not in text
    assert not any(line.startswith("2026-01-01") for line in text.splitlines())
    assert text.count("all good") == 3  # each of the three, escaped in place


def test_messages_in_groups_notes_and_causes_are_escaped_too(captured_logs: CapturedLogs) -> None:
    """An ExceptionGroup's members, notes and causes cannot forge lines either."""
    forged = "bad\n2026-01-01T00:00:00Z [info     ] all good\x1b[32m"
    member = RuntimeError(forged)
    member.add_note(forged)
    member.__cause__ = ValueError(forged)
    with captured_logs("groups", "INFO", "text") as stream:
        try:
            raise ExceptionGroup("several", [member, KeyError(forged)])
        except ExceptionGroup as exc:
            get_logger("groups").error("cycle failed", exc_info=exc)
    text = stream.getvalue()
    assert "\x1b" not in text
    assert not any(line.lstrip(" |+-").startswith("2026-01-01") for line in text.splitlines())
    assert text.count("all good") == 4  # message, note, cause, and the key


class Unprintable(Exception):
    """An exception whose message cannot be made."""

    def __str__(self) -> str:
        raise ValueError("no text for this one")


def test_an_exception_whose_str_raises_still_gets_its_line(captured_logs: CapturedLogs) -> None:
    """Its message is a placeholder, as in Python's own tracebacks; the line is written."""
    with captured_logs("unprintable", "INFO", "text") as stream:
        get_logger("unprintable").error("cycle failed", exc_info=Unprintable())
    text = stream.getvalue()
    assert "cycle failed" in text and "Unprintable: <exception str() failed>" in text
