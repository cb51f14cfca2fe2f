"""``PerRegistry``: metrics that each registry holds once, however many users share them.

Imports nothing that registers a metric, so the exposition core can use it and
still create nothing at import.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

from prometheus_client.registry import CollectorRegistry

__all__ = ["PerRegistry"]

T = TypeVar("T")


class PerRegistry(Generic[T]):
    """One ``make(registry)`` per registry, made on first use and then shared.

    A registry refuses a metric name twice, so metrics that every server or
    endpoint on a registry reports (their own health) are registered once
    and shared by all of them.
    """

    def __init__(self, make: Callable[[CollectorRegistry], T]) -> None:
        self._make = make
        self._made: weakref.WeakKeyDictionary[CollectorRegistry, T] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def all(self) -> list[T]:
        """What has been made so far, for every registry still alive."""
        with self._lock:
            return list(self._made.values())

    def __call__(self, registry: CollectorRegistry) -> T:
        """The registry's ``T``, made (and its metrics registered) the first time."""
        with self._lock:
            made = self._made.get(registry)
            if made is None:
                made = self._made[registry] = self._make(registry)
            return made
