"""What the event-loop watchdog costs the loop it watches.

Two measures, each with and without a watchdog probing every 100 ms (the
default):

- CPU: the process's CPU time while the loop idles for a few seconds; the
  difference is what the watchdog thread itself uses.
- Throughput: loop iterations (``await asyncio.sleep(0)``) a busy coroutine
  gets through in 1 s, runs alternating with and without, median of each, so
  both see the same machine. On a shared machine this moves by several
  percent from run to run; the spread is printed beside it.

Target: negligible (under 1% of a core, and throughput within the noise).
"""

from __future__ import annotations

import asyncio
import statistics
import time

from bigbrotr.core.watchdog import LoopWatchdog

IDLE_SECONDS = 3.0
BUSY_SECONDS = 1.0
ROUNDS = 9


def watchdog() -> LoopWatchdog:
    return LoopWatchdog(asyncio.get_running_loop(), threshold=1.0, observe=lambda lag: None)


async def idle_cpu(watched: bool) -> float:
    """CPU seconds per second while the loop idles."""
    dog = watchdog() if watched else None
    if dog is not None:
        dog.start()
    start = time.process_time()
    await asyncio.sleep(IDLE_SECONDS)
    used = (time.process_time() - start) / IDLE_SECONDS
    if dog is not None:
        dog.stop()
    return used


async def iterations(watched: bool) -> int:
    """Loop iterations a busy coroutine gets through in ``BUSY_SECONDS``."""
    dog = watchdog() if watched else None
    if dog is not None:
        dog.start()
    count, end = 0, time.perf_counter() + BUSY_SECONDS
    while time.perf_counter() < end:
        await asyncio.sleep(0)
        count += 1
    if dog is not None:
        dog.stop()
    return count


async def main() -> None:
    bare, watched = await idle_cpu(False), await idle_cpu(True)
    print(f"idle loop CPU: {bare:.3%} of a core without, {watched:.3%} with the watchdog")
    print(f"  watchdog thread: {max(0.0, watched - bare):.3%} of a core (target < 1%)")
    runs: dict[bool, list[int]] = {False: [], True: []}
    for _ in range(ROUNDS):
        for with_dog in (False, True):
            runs[with_dog].append(await iterations(with_dog))
    without, with_ = statistics.median(runs[False]), statistics.median(runs[True])
    spread = (max(runs[False]) - min(runs[False])) / without
    print(f"busy loop iterations/s, median of {ROUNDS}: {without:.0f} without, {with_:.0f} with")
    print(f"  with / without = {with_ / without:.3f} (run-to-run spread without: {spread:.1%})")


if __name__ == "__main__":
    asyncio.run(main())
