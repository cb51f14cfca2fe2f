"""Share blocking work between concurrent callers without serving stale results.

Scrapes that arrive together want the same body. Rendering it once per scrape
wastes the CPU the service needs; handing a late scrape a body rendered before
it arrived would show it old values. ``Coalescer`` does neither: a caller that
arrives while a job for its key is running waits for the *next* job, which
starts when the running one ends and serves everyone who arrived meanwhile.
So each caller gets a result computed after it arrived, and any number of
concurrent callers of one key cost at most two jobs.

Callers of one key may differ in a detail that only adds to the job (gzip
wanted or not): each passes it as an ``option``, and a job is given the
options of all the callers it serves, which are known when it starts.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Any, Generic, ParamSpec, TypeVar

__all__ = ["Coalescer", "DaemonThreadExecutor", "TooManyKeys"]

P = ParamSpec("P")
T = TypeVar("T")

KeyT = TypeVar("KeyT", bound=Hashable)
OptionT = TypeVar("OptionT", bound=Hashable)
ResultT = TypeVar("ResultT")


@dataclass
class _Slot(Generic[OptionT, ResultT]):
    running: asyncio.Future[ResultT] | None = None
    queued: asyncio.Future[ResultT] | None = None
    queued_options: set[OptionT] = field(default_factory=set)


class TooManyKeys(Exception):
    """More distinct keys are waiting for jobs than the coalescer holds."""


class Coalescer(Generic[KeyT, OptionT, ResultT]):
    """Run ``job(key, options)`` in ``executor``, sharing each run among its callers.

    Args:
        job: The blocking function; it runs in ``executor``, never on the loop.
        executor: Where ``job`` runs.
        max_keys: Distinct keys with a job running or queued at once; a call
            for another key raises ``TooManyKeys``. With a job stuck (a hung
            collector), this bounds what waits behind it.
    """

    def __init__(
        self,
        job: Callable[[KeyT, frozenset[OptionT]], ResultT],
        executor: Executor,
        max_keys: int = 16,
    ) -> None:
        self._job = job
        self._executor = executor
        self._max_keys = max_keys
        self._slots: dict[KeyT, _Slot[OptionT, ResultT]] = {}

    async def get(self, key: KeyT, option: OptionT) -> ResultT:
        """A result of a ``job(key, options)`` that started no earlier than this call.

        ``option`` is among that job's ``options``. Cancelling one caller (a
        timeout, a client that went away) does not cancel the shared job.

        Raises:
            TooManyKeys: If ``max_keys`` other keys are pending.
        """
        loop = asyncio.get_running_loop()
        if key not in self._slots and len(self._slots) >= self._max_keys:
            raise TooManyKeys(f"{len(self._slots)} different renders are already pending")
        slot: _Slot[OptionT, ResultT] = self._slots.setdefault(key, _Slot())
        if slot.running is None:
            future = slot.running = loop.create_future()
            self._start(key, slot, future, frozenset((option,)))
        else:
            if slot.queued is None:
                slot.queued = loop.create_future()
                slot.queued_options = set()
            slot.queued_options.add(option)
            future = slot.queued
        return await asyncio.shield(future)

    def _start(
        self,
        key: KeyT,
        slot: _Slot[OptionT, ResultT],
        future: asyncio.Future[ResultT],
        options: frozenset[OptionT],
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            work = loop.run_in_executor(self._executor, self._run_job, key, options)
        except RuntimeError as exc:  # the executor was shut down
            future.set_exception(exc)
            slot.running = slot.queued = None
            del self._slots[key]
            return
        work.add_done_callback(lambda done: self._finish(key, slot, future, done))

    def _run_job(self, key: KeyT, options: frozenset[OptionT]) -> ResultT:
        """Call the job, turning what asyncio futures cannot carry into RuntimeError.

        A ``StopIteration`` would never reach the waiters (asyncio refuses it),
        and a ``SystemExit`` from a collector must not end the service.
        """
        try:
            return self._job(key, options)
        except BaseException as exc:
            if isinstance(exc, Exception) and not isinstance(exc, StopIteration):
                raise
            raise RuntimeError(f"{type(exc).__name__}: {exc}") from exc

    def _finish(
        self,
        key: KeyT,
        slot: _Slot[OptionT, ResultT],
        future: asyncio.Future[ResultT],
        done: asyncio.Future[ResultT],
    ) -> None:
        if done.cancelled():
            future.cancel()
        elif (error := done.exception()) is not None:
            future.set_exception(error)
        else:
            future.set_result(done.result())
        slot.running, slot.queued = slot.queued, None
        if slot.running is not None:
            self._start(key, slot, slot.running, frozenset(slot.queued_options))
        else:
            del self._slots[key]


class DaemonThreadExecutor(Executor):
    """An executor with one daemon worker thread.

    ``ThreadPoolExecutor`` joins its threads at interpreter exit, so a job stuck
    in a hung collector would keep the process from ever exiting. A daemon
    thread cannot; and one thread is enough for GIL-bound rendering.
    """

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]] | None]
        self._jobs = queue.SimpleQueue()
        self._closed = False
        threading.Thread(target=self._work, name=name, daemon=True).start()

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Queue ``fn(*args, **kwargs)``.

        Raises:
            RuntimeError: After ``shutdown``.
        """
        if self._closed:
            raise RuntimeError("cannot schedule new futures after shutdown")
        future: Future[T] = Future()
        self._jobs.put((future, lambda: fn(*args, **kwargs)))
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking jobs; the worker ends after the current one (never waited for)."""
        self._closed = True
        while cancel_futures:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                job[0].cancel()
        self._jobs.put(None)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            future, call = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(call())
            except BaseException as exc:  # handed to the caller, like ThreadPoolExecutor
                future.set_exception(exc)
