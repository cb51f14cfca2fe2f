"""Timing a block or a function into a histogram: ``BaseService.timed`` and ``timed``.

``Timer`` is the one object behind every form: ``with``, ``async with``, and a
decorator of sync or async functions. Unlike prometheus_client's ``time()``,
which times only the creation of a coroutine when it decorates an ``async
def``, a decorated coroutine function is timed until it returns. The time is
observed whether the block succeeds or raises.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Protocol, TypeVar, cast

__all__ = ["Observer", "Timer", "timed"]

F = TypeVar("F", bound=Callable[..., Any])


class Observer(Protocol):
    """What a timer observes into: a histogram's (or summary's) child."""

    def observe(self, amount: float) -> None:
        """Record one duration in seconds."""


class Timer:
    """Times one block (``with`` / ``async with``) or every call of a function it decorates.

    One ``Timer`` per block: a block's start is kept on the object. As a
    decorator, each call keeps its own start, so concurrent calls are fine.
    """

    __slots__ = ("_observe", "_started")

    def __init__(self, observe: Callable[[float], None]) -> None:
        self._observe = observe
        self._started = 0.0

    def __enter__(self) -> Timer:
        self._started = time.perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._observe(time.perf_counter() - self._started)

    async def __aenter__(self) -> Timer:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    def __call__(self, function: F) -> F:
        """Decorate a sync or async function: every call is timed until it returns.

        Raises:
            TypeError: For a generator function, whose call only creates the
                generator: time the loop that consumes it instead.
        """
        observe = self._observe
        return _timed_calls(function, lambda args: observe)


def _timed_calls(function: F, observer: Callable[[tuple[Any, ...]], Callable[[float], None]]) -> F:
    """``function`` with each call timed until it returns, into ``observer(call's args)``."""
    if inspect.isgeneratorfunction(function) or inspect.isasyncgenfunction(function):
        raise TypeError(
            f"cannot time {function.__qualname__}: calling a generator function only creates "
            "the generator; time the loop that consumes it"
        )
    if inspect.iscoroutinefunction(function):

        @functools.wraps(function)
        async def timed_coroutine(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await function(*args, **kwargs)
            finally:
                observer(args)(time.perf_counter() - started)

        return cast(F, timed_coroutine)

    @functools.wraps(function)
    def timed_function(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            observer(args)(time.perf_counter() - started)

    return cast(F, timed_function)


def timed(operation: str) -> Callable[[F], F]:
    """Decorate a service's method (sync or async): each call is ``self.timed(operation)``.

    Examples:
        class Fetcher(BaseService[FetcherConfig]):
            @timed("fetch")
            async def fetch(self, url: str) -> bytes: ...
    """

    def decorate(method: F) -> F:
        # The first argument is the service: its timer for ``operation`` observes.
        return _timed_calls(method, lambda args: args[0].timed(operation)._observe)

    return decorate
