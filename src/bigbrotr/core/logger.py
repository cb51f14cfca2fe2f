"""Structured logging on structlog, for our code and the libraries beneath it.

One call, ``configure_logging``, sets up both structlog and the standard
``logging`` root, so lines from aiohttp and asyncio come out in the same format
and carry the same ``service`` field as ours. ``Throttle`` is the one rule for
events that repeat (a failing cycle, a broken collector, a scanner's bad
requests): which of them get a line, and how many each line stands for.
"""

from __future__ import annotations

import logging
import re
import sys
import time
import traceback
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Literal, TextIO

import structlog
from structlog.typing import EventDict, FilteringBoundLogger, Processor, WrappedLogger

__all__ = [
    "LOG_FORMATS",
    "LOG_LEVELS",
    "LogFormat",
    "Seen",
    "Throttle",
    "configure_logging",
    "get_logger",
]

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class _AddService:
    """Processor that stamps every event with the service name."""

    def __init__(self, service: str) -> None:
        self._service = service

    def __call__(self, logger: WrappedLogger, method: str, event: EventDict) -> EventDict:
        event.setdefault("service", self._service)
        return event


def configure_logging(
    service: str,
    level: str = "INFO",
    fmt: LogFormat = "text",
    stream: TextIO | None = None,
) -> None:
    """Route structlog and standard logging to one stream in one format.

    Args:
        service: Name added to every line, so mixed logs stay attributable.
        level: Minimum level name (``DEBUG`` ... ``CRITICAL``).
        fmt: ``text`` for people, ``json`` for one JSON object per line.
        stream: Where lines go; standard error by default.
    """
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        _AddService(service),
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Processor
    last: list[Processor] = [structlog.stdlib.ProcessorFormatter.remove_processors_meta]
    if fmt == "json":
        shared.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer()
    else:
        # a message or a value must not forge lines or colours (older structlog prints
        # strings raw)
        last += [_escaped_exception, _escaped_values]
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[*last, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)


_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")
_CONTROL_OR_NEWLINE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _escape(text: str, pattern: re.Pattern[str]) -> str:
    return pattern.sub(lambda m: repr(m.group())[1:-1], text)


def _escaped_exception(logger: WrappedLogger, method: str, event: EventDict) -> EventDict:
    """The traceback as text, its exceptions' messages escaped (newlines, ANSI escapes).

    A message is data: printed raw in a text log, its newlines would forge log
    lines and its escapes colours. The traceback keeps its own line breaks.
    """
    exc_info = event.pop("exc_info", None)
    if isinstance(exc_info, BaseException):
        error: BaseException | None = exc_info
    elif isinstance(exc_info, tuple):
        error = exc_info[1]
    elif exc_info:
        error = sys.exc_info()[1]
    else:
        return event
    if error is None:
        return event
    report = traceback.TracebackException.from_exception(error)
    _escape_messages(report, set())
    text = "".join(report.format())
    event["exception"] = _escape(text, _CONTROL)
    return event


def _escape_messages(report: traceback.TracebackException, seen: set[int]) -> None:
    """Escape the messages and notes of ``report``, its causes, contexts and group members.

    The message is kept in ``TracebackException._str`` (3.11 to 3.13), already
    a placeholder when ``__str__`` raised; without it, only control
    characters are escaped (by the caller).
    """
    if id(report) in seen:
        return
    seen.add(id(report))
    if isinstance(message := getattr(report, "_str", None), str):
        setattr(report, "_str", _escape(message, _CONTROL_OR_NEWLINE))  # noqa: B010
    if isinstance(notes := report.__notes__, list):  # a note that is not text is left as is
        report.__notes__ = [
            _escape(note, _CONTROL_OR_NEWLINE) if isinstance(note, str) else note for note in notes
        ]
    linked = (report.__cause__, report.__context__, *(report.exceptions or ()))
    for each in linked:
        if each is not None:
            _escape_messages(each, seen)


def _escaped_values(logger: WrappedLogger, method: str, event: EventDict) -> EventDict:
    """Every text value (the event's words too) with its control characters escaped."""
    for key, value in event.items():
        if isinstance(value, str) and key != "exception" and _CONTROL_OR_NEWLINE.search(value):
            event[key] = _escape(value, _CONTROL_OR_NEWLINE)
    return event


def get_logger(name: str, **context: Any) -> FilteringBoundLogger:
    """Return a structured logger named ``name`` with ``context`` bound.

    The logger is a lazy proxy: it follows ``configure_logging`` even when it
    was created before, as module-level loggers are.
    """
    logger: FilteringBoundLogger = structlog.get_logger(name, **context)
    return logger


@dataclass(frozen=True)
class Seen:
    """What ``Throttle.note`` decided about one event.

    Attributes:
        log: Whether this event gets a line.
        first: Whether it is the first of its kind (the one worth a traceback).
        count: How many of its kind have been seen, this one included.
        since: How many of its kind this line stands for (since the last line).
    """

    log: bool
    first: bool
    count: int
    since: int


class Throttle:
    """Which repeats of an event get a log line: the first of each kind, then one per ``every``.

    With ``every=None`` only the first of each kind is logged. At most
    ``max_kinds`` kinds are remembered; past that, a new kind is logged as a
    first every time (nothing hidden), or, with ``log_unremembered=False``,
    not at all (when kinds come from data, say an error message, and every
    event could otherwise be a new one).
    """

    def __init__(
        self,
        every: float | None = None,
        max_kinds: int = 1000,
        now: Callable[[], float] = time.monotonic,
        *,
        log_unremembered: bool = True,
    ) -> None:
        self._every = every
        self._max_kinds = max_kinds
        self._log_unremembered = log_unremembered
        self._now = now
        #: kind -> [seen, seen since the last line, when the last line was]
        self._kinds: dict[Hashable, list[float]] = {}

    def note(self, kind: Hashable = None) -> Seen:
        """Count one event of ``kind`` and say whether to log it."""
        now = self._now()
        entry = self._kinds.get(kind)
        if entry is None:
            if len(self._kinds) < self._max_kinds:
                self._kinds[kind] = [1, 0, now]
            elif not self._log_unremembered:
                return Seen(log=False, first=True, count=1, since=1)
            return Seen(log=True, first=True, count=1, since=1)
        entry[0] += 1
        entry[1] += 1
        if self._every is None or now - entry[2] < self._every:
            return Seen(log=False, first=False, count=int(entry[0]), since=int(entry[1]))
        since, entry[1], entry[2] = int(entry[1]), 0, now
        return Seen(log=True, first=False, count=int(entry[0]), since=since)
