import asyncio
import io
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from bigbrotr.core.base_service import BaseService, BaseServiceConfig
from bigbrotr.process import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    ShutdownSignals,
    UsageError,
)


def test_exit_codes_follow_the_shell_conventions() -> None:
    """0 done, 1 failed, 2 a usage mistake (as argparse), 130 interrupted (128 + SIGINT)."""
    assert (EXIT_OK, EXIT_FAILED, EXIT_USAGE) == (0, 1, 2)
    assert EXIT_INTERRUPTED == 128 + signal.SIGINT == 130


def test_a_usage_error_is_an_ordinary_exception_carrying_its_line() -> None:
    """Caught as an Exception (never a control-flow BaseException), its message as given."""
    error = UsageError("config file not found: svc.yaml")
    assert isinstance(error, Exception)
    assert str(error) == "config file not found: svc.yaml"


def test_the_module_loads_only_the_standard_library() -> None:
    """Importing bigbrotr.process loads no third-party package and none of the runtime."""
    script = (
        "import sys, bigbrotr.process\n"
        "heavy = {'aiohttp', 'prometheus_client', 'pydantic', 'structlog', 'yaml'}\n"
        "print(sorted(m for m in sys.modules\n"
        "             if m.split('.')[0] in heavy or m.startswith('bigbrotr.core')))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert (done.returncode, done.stdout, done.stderr) == (0, "[]\n", "")


class Idle(BaseService[BaseServiceConfig]):
    """A real-time service that does nothing; metrics off."""

    SERVICE_NAME = "signalled"

    async def cleanup(self) -> int:
        return 0

    async def run(self) -> None:
        pass


@pytest.fixture
def shutdown_signals() -> Iterator[ShutdownSignals]:
    """A ShutdownSignals; the handlers before it are put back at teardown, whatever happened."""
    before = {sig: signal.getsignal(sig) for sig in ShutdownSignals.SIGNALS}
    signals = ShutdownSignals()
    yield signals
    signals.detach()
    for sig, handler in before.items():
        signal.signal(sig, handler)


def send(sig: signal.Signals) -> None:
    """Deliver ``sig`` to this process's main thread, where Python runs signal handlers."""
    main = threading.main_thread().ident
    assert main is not None
    signal.pthread_kill(main, sig)


async def received(signals: ShutdownSignals, count: int) -> None:
    """Wait (5 s at most) until the handler has run ``count`` times."""
    deadline = time.monotonic() + 5
    while signals.received < count:
        assert time.monotonic() < deadline, "the signal handler did not run"
        await asyncio.sleep(0.01)


async def test_the_first_signal_hands_the_shutdown_request_to_the_loop(
    shutdown_signals: ShutdownSignals, log_stream: io.StringIO
) -> None:
    """SIGTERM while a service runs asks it to stop (its wait ends at once), and is logged."""
    shutdown_signals.install()
    async with Idle() as service:
        shutdown_signals.attach(service)
        send(signal.SIGTERM)
        assert await service.wait(5) is True  # woken by the shutdown request
        assert not service.is_running
        assert shutdown_signals.received == 1
    deadline = time.monotonic() + 5  # logged from a thread of its own
    while "shutdown requested" not in log_stream.getvalue():
        assert time.monotonic() < deadline, log_stream.getvalue()
        await asyncio.sleep(0.01)
    lines = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    (line,) = [line for line in lines if line["event"].startswith("shutdown requested")]
    assert (line["event"], line["signal"]) == (
        "shutdown requested, stopping after the current cycle",
        "SIGTERM",
    )


async def test_a_signal_during_start_up_is_honoured_when_the_service_attaches(
    shutdown_signals: ShutdownSignals,
) -> None:
    """A SIGTERM before any service exists is remembered; attach() then asks it to stop."""
    shutdown_signals.install()
    send(signal.SIGTERM)
    await received(shutdown_signals, 1)
    async with Idle() as service:
        assert service.is_running
        shutdown_signals.attach(service)
        assert not service.is_running


async def test_a_detached_service_is_no_longer_asked(shutdown_signals: ShutdownSignals) -> None:
    """After detach() (its loop about to close) a signal is counted but reaches no service."""
    shutdown_signals.install()
    async with Idle() as service:
        shutdown_signals.attach(service)
        shutdown_signals.detach()
        send(signal.SIGINT)
        await received(shutdown_signals, 1)
        await asyncio.sleep(0)  # a request handed to the loop would have run by now
        assert service.is_running


def test_restore_gives_the_signals_their_default_handling(
    shutdown_signals: ShutdownSignals,
) -> None:
    """install() takes SIGINT and SIGTERM; restore() gives them back as Python starts them."""
    shutdown_signals.install()
    assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN)
    shutdown_signals.restore()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


STARTING = """
import sys, time
from bigbrotr.core.logger import configure_logging
from bigbrotr.process import ShutdownSignals

configure_logging("starting", "INFO", "json", stream=sys.stderr)
signals = ShutdownSignals()
signals.install()
print("installed", flush=True)
while not signals.received:
    time.sleep(0.01)
print("remembered", signals.received, flush=True)
time.sleep(30)  # still starting (a slow import): the second signal must not wait for it
print("not interrupted", flush=True)
"""


def test_a_second_signal_during_start_up_exits_130_at_once() -> None:
    """Before any service exists: the first signal is remembered, the second exits 130, logged."""
    process = subprocess.Popen(
        [sys.executable, "-c", STARTING],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "installed\n"
        process.send_signal(signal.SIGTERM)
        assert process.stdout.readline() == "remembered 1\n"
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=10)
        assert time.monotonic() - started < 5  # not the 30 s the start-up would take
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == EXIT_INTERRUPTED
    assert out == ""
    (line,) = [json.loads(line) for line in err.splitlines()]
    assert (line["event"], line["signal"], line["level"]) == (
        "second signal, exiting now",
        "SIGINT",
        "warning",
    )


@pytest.mark.parametrize(("ignored", "received"), [(True, "0"), (False, "1")])
def test_a_sighup_ignored_from_the_start_stays_ignored(ignored: bool, received: str) -> None:
    """Under nohup, SIGHUP stays ignored; otherwise it is the one mechanism's to handle."""
    script = (
        "import os, signal\n"
        "from bigbrotr.process import ShutdownSignals\n"
        "signals = ShutdownSignals()\n"
        "signals.install()\n"
        "os.kill(os.getpid(), signal.SIGHUP)\n"
        "print(signals.received)\n"
        "signals.restore()\n"
        "print(signal.getsignal(signal.SIGHUP) == signal.SIG_IGN)\n"
    )

    def start() -> None:
        signal.signal(signal.SIGHUP, signal.SIG_IGN if ignored else signal.SIG_DFL)

    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, preexec_fn=start
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [received, str(ignored)]
