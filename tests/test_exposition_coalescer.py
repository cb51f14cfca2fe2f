import asyncio
import threading
from collections.abc import Iterator

import pytest

from bigbrotr.core.exposition._coalescer import Coalescer, DaemonThreadExecutor


class GatedJob:
    """A job that blocks until released, counting its runs and returning the run number."""

    def __init__(self) -> None:
        self.runs = 0
        self.gates: list[threading.Event] = []
        self.options: list[frozenset[int]] = []
        self.started = threading.Semaphore(0)

    def __call__(self, key: str, options: frozenset[int]) -> str:
        self.runs += 1
        self.options.append(options)
        run = self.runs
        gate = threading.Event()
        self.gates.append(gate)
        self.started.release()
        gate.wait(10)
        if key == "fail":
            raise ValueError(f"run {run} failed")
        return f"{key}:{run}"

    async def wait_started(self) -> None:
        await asyncio.to_thread(self.started.acquire, True, 10)

    def release(self, run: int) -> None:
        self.gates[run - 1].set()


async def arrived(callers: list[asyncio.Task[str]]) -> None:
    """Let new callers reach the coalescer: each runs, in one loop step, until it waits there.

    ``get`` queues a caller before its first ``await``, and tasks created before
    this step run before it ends: no time has to pass, none of them is answered.
    """
    await asyncio.sleep(0)
    assert not any(caller.done() for caller in callers)


@pytest.fixture
def executor() -> Iterator[DaemonThreadExecutor]:
    executor = DaemonThreadExecutor("test-render")
    yield executor
    executor.shutdown()


async def test_callers_during_a_run_share_the_next_run(executor: DaemonThreadExecutor) -> None:
    """Ten callers arriving during run 1 all get run 2; two runs in total."""
    job = GatedJob()
    coalescer = Coalescer(job, executor)
    first = asyncio.create_task(coalescer.get("k", 0))
    await job.wait_started()
    late = [asyncio.create_task(coalescer.get("k", 0)) for _ in range(10)]
    await arrived(late)
    assert job.runs == 1  # the next run waits for the current one
    job.release(1)
    assert await first == "k:1"
    await job.wait_started()
    job.release(2)
    assert set(await asyncio.gather(*late)) == {"k:2"}
    assert job.runs == 2


async def test_a_run_gets_the_options_of_all_its_callers(executor: DaemonThreadExecutor) -> None:
    """Callers queued for the next run contribute their options to it (gzip or not)."""
    job = GatedJob()
    coalescer = Coalescer(job, executor)
    first = asyncio.create_task(coalescer.get("k", 1))
    await job.wait_started()
    late = [asyncio.create_task(coalescer.get("k", option)) for option in (2, 3, 2)]
    await arrived(late)
    job.release(1)
    await job.wait_started()
    job.release(2)
    await asyncio.gather(first, *late)
    assert job.options == [frozenset({1}), frozenset({2, 3})]


@pytest.mark.parametrize(
    ("first_key", "second_key", "results"),
    [("k", "k", ("k:1", "k:2")), ("a", "b", ("a:1", "b:2"))],
    ids=["same key: not handed the older run", "other key: own run"],
)
async def test_a_caller_arriving_mid_run_gets_a_later_run(
    executor: DaemonThreadExecutor, first_key: str, second_key: str, results: tuple[str, str]
) -> None:
    """A caller arriving during a run gets a run that starts after it, whatever its key."""
    job = GatedJob()
    coalescer = Coalescer(job, executor)
    first = asyncio.create_task(coalescer.get(first_key, 0))
    await job.wait_started()
    second = asyncio.create_task(coalescer.get(second_key, 0))
    await arrived([second])  # mid-run: run 1 is still held
    job.release(1)
    await job.wait_started()
    job.release(2)
    assert (await first, await second) == results


async def test_failure_reaches_every_waiter_and_the_next_run_is_fresh(
    executor: DaemonThreadExecutor,
) -> None:
    """A failed run raises in all its callers; later calls start a new run."""
    job = GatedJob()
    coalescer = Coalescer(job, executor)
    callers = [asyncio.create_task(coalescer.get("fail", 0)) for _ in range(3)]
    await job.wait_started()
    job.release(1)
    await job.wait_started()
    job.release(2)
    results = await asyncio.gather(*callers, return_exceptions=True)
    assert [str(r) for r in results] == ["run 1 failed", "run 2 failed", "run 2 failed"]
    again = asyncio.create_task(coalescer.get("fail", 0))
    await job.wait_started()
    job.release(3)
    with pytest.raises(ValueError, match="run 3 failed"):
        await again


async def test_cancelled_caller_does_not_cancel_the_shared_run(
    executor: DaemonThreadExecutor,
) -> None:
    """A caller that times out leaves the run to the others."""
    job = GatedJob()
    coalescer = Coalescer(job, executor)
    impatient = asyncio.create_task(asyncio.wait_for(coalescer.get("k", 0), 0.05))
    patient = asyncio.create_task(coalescer.get("k", 0))
    await job.wait_started()
    with pytest.raises(TimeoutError):
        await impatient
    job.release(1)
    assert await patient == "k:1"


async def test_shut_down_executor_fails_callers_instead_of_hanging() -> None:
    """After shutdown, a call fails at once with RuntimeError."""
    executor = DaemonThreadExecutor("closed")
    executor.shutdown()
    coalescer: Coalescer[str, int, str] = Coalescer(lambda key, options: key.upper(), executor)
    with pytest.raises(RuntimeError, match="shutdown"):
        await asyncio.wait_for(coalescer.get("k", 0), 5)


def test_daemon_executor_runs_jobs_on_a_daemon_thread() -> None:
    """Jobs run in order on one daemon thread, so a stuck job cannot block exit."""
    executor = DaemonThreadExecutor("worker")
    threads = [executor.submit(threading.current_thread).result(5) for _ in range(3)]
    assert len(set(threads)) == 1
    assert threads[0].daemon and threads[0].name == "worker"
    assert threads[0] is not threading.main_thread()
    executor.shutdown()


@pytest.mark.parametrize("error", [StopIteration("done"), SystemExit(3)])
async def test_errors_futures_cannot_carry_become_runtime_errors(
    executor: DaemonThreadExecutor, error: BaseException
) -> None:
    """StopIteration or SystemExit from a job fails its callers with RuntimeError, not a hang."""
    calls = []

    def job(key: str, options: frozenset[int]) -> str:
        calls.append(key)
        if len(calls) == 1:
            raise error
        return "fine"

    coalescer: Coalescer[str, int, str] = Coalescer(job, executor)
    with pytest.raises(RuntimeError, match=type(error).__name__):
        await asyncio.wait_for(coalescer.get("k", 0), 5)
    assert await asyncio.wait_for(coalescer.get("k", 0), 5) == "fine"
