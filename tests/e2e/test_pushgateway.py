import http.server
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from bigbrotr.testing import sample_value
from tests.support.cli import CLI, TARGET, WaitUntil

StartCLI = Callable[..., CLI]


@pytest.fixture
def pushgateway(wait_until: WaitUntil, tmp_path: Path) -> Iterator[str]:
    """A real prometheus-pushgateway on a free loopback port; yields its URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = (tmp_path / "pushgateway.log").open("wb")
    process = subprocess.Popen(
        [
            "prometheus-pushgateway",
            f"--web.listen-address=127.0.0.1:{port}",
            "--persistence.file=",  # Debian's default file would carry groups across tests
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=1):
                return True
        except OSError:
            return False

    try:
        wait_until(ready, what="the pushgateway to start")
        yield url
    finally:
        process.terminate()
        process.wait(10)
        log.close()


def pushed(url: str) -> str:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
        body: bytes = response.read()
    return body.decode()


def config(url: str, mode: str = "ok") -> dict[str, object]:
    return {
        "mode": mode,
        "metrics": {
            "enabled": True,
            "pushgateway": {"url": url, "job": "nightly", "grouping_key": {"path": "/data/in"}},
        },
    }


@pytest.mark.parametrize(("mode", "code"), [("ok", 0), ("fail", 1)])
def test_once_pushes_its_metrics_after_the_cycle(
    start_cli: StartCLI, pushgateway: str, mode: str, code: int
) -> None:
    """--once pushes (grouping values with '/' included), success or not, and logs one line."""
    cli = start_cli(
        "run", TARGET, "--once", "--log-format", "json", config=config(pushgateway, mode)
    )
    assert cli.wait() == code
    text = pushed(pushgateway)
    labels = {"job": "nightly", "path": "/data/in", "service": "e2e"}
    outcome = "cycles_success" if mode == "ok" else "cycles_failed"
    assert sample_value(text, "service_counter_total", name=outcome, **labels) == 1
    assert sample_value(text, "service_gauge", name="run_duration_seconds", **labels) is not None
    last_success = sample_value(text, "service_gauge", name="last_success_timestamp", **labels)
    assert (last_success is not None) is (mode == "ok")
    done = cli.logged("once done")
    assert len(done) == 1
    assert done[0]["outcome"] == ("success" if mode == "ok" else "failure")
    assert done[0]["pushed"] is True


def test_a_name_utf8_cannot_encode_is_pushed_escaped(start_cli: StartCLI, pushgateway: str) -> None:
    """A lone surrogate (a file name os.fsdecode could not decode) does not fail the push."""
    cli = start_cli("run", TARGET, "--once", config=config(pushgateway, "odd_name"))
    assert cli.wait() == 0  # before: the push raised UnicodeEncodeError, and the run exited 1
    labels = {"job": "nightly", "path": "/data/in", "service": "e2e"}
    text = pushed(pushgateway)
    assert sample_value(text, "service_counter_total", name="file_\\udcff", **labels) == 1
    assert sample_value(text, "service_counter_total", name="cycles_success", **labels) == 1


def test_a_failed_run_keeps_the_last_success_it_replaces(
    start_cli: StartCLI, pushgateway: str
) -> None:
    """A failed run's push carries the group's last success over, so staleness alerts work."""
    ok = start_cli("run", TARGET, "--once", "--log-format", "json", config=config(pushgateway))
    assert ok.wait() == 0
    labels = {"job": "nightly", "path": "/data/in", "service": "e2e"}
    first = sample_value(
        pushed(pushgateway), "service_gauge", name="last_success_timestamp", **labels
    )
    assert first is not None
    other = config(pushgateway, "fail")
    other["metrics"]["pushgateway"]["grouping_key"] = {"path": "/data/other"}  # type: ignore[index]
    assert start_cli("run", TARGET, "--once", config=other).wait() == 1  # another group: none
    failed = start_cli("run", TARGET, "--once", config=config(pushgateway, "fail"))
    assert failed.wait() == 1
    text = pushed(pushgateway)
    assert sample_value(text, "service_counter_total", name="cycles_failed", **labels) == 1
    assert sample_value(text, "service_gauge", name="last_success_timestamp", **labels) == first
    elsewhere = {**labels, "path": "/data/other"}
    assert sample_value(text, "service_gauge", name="last_success_timestamp", **elsewhere) is None


class SignInPage(http.server.BaseHTTPRequestHandler):
    """A proxy in front of the Pushgateway: its GET answers HTML, its PUT is accepted."""

    puts: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(b"<html><body>Please sign in</body></html>")

    def do_PUT(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.puts.append(self.path)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_a_gateway_that_is_not_metrics_still_gets_the_push(start_cli: StartCLI) -> None:
    """Reading back the last success fails (HTML), which is a WARNING; the push still happens."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SignInPage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        cli = start_cli("run", TARGET, "--once", "--log-format", "json", config=config(url, "fail"))
        assert cli.wait() == 1
    finally:
        server.shutdown()
        server.server_close()
    assert cli.logged("could not read the last success from the Pushgateway")
    assert cli.logged("once done")[0]["pushed"] is True
    assert SignInPage.puts == ["/metrics/job/nightly/path@base64/L2RhdGEvaW4="]


def test_a_failed_push_turns_success_into_exit_1(start_cli: StartCLI) -> None:
    """An unreachable Pushgateway is logged, and a successful cycle then exits 1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    cli = start_cli("run", TARGET, "--once", "--log-format", "json", config=config(closed))
    assert cli.wait() == 1
    assert cli.logged("push to the Pushgateway failed")
    assert (
        cli.logged("once done")[0] | {"outcome": "success", "pushed": False}
        == cli.logged("once done")[0]
    )


class Dripping(http.server.BaseHTTPRequestHandler):
    """A gateway that answers every request one byte at a time, forever."""

    def drip(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "1000000")
        self.end_headers()
        try:
            while True:
                self.wfile.write(b"#")
                self.wfile.flush()
                time.sleep(0.2)
        except OSError:  # the client gave up
            pass

    do_GET = drip

    def do_PUT(self) -> None:
        """The answer to a push never ends its headers: a byte at a time, forever."""
        self.rfile.read(int(self.headers["Content-Length"]))
        try:
            self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Drip: ")
            while True:
                self.wfile.write(b"h")
                self.wfile.flush()
                time.sleep(0.2)
        except OSError:  # the client gave up
            pass

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("mode", ["fail", "ok"], ids=["read back, then PUT", "PUT only"])
def test_a_dripping_gateway_cannot_hold_the_run_past_its_timeout(
    start_cli: StartCLI, mode: str
) -> None:
    """Both requests of the push finish within `timeout`, however slowly the gateway sends."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Dripping)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        settings = config(url, mode)  # a failed run reads the last success back first
        settings["metrics"]["pushgateway"]["timeout"] = 1  # type: ignore[index]
        cli = start_cli("run", TARGET, "--once", "--log-format", "json", config=settings)
        assert cli.wait(timeout=15) == 1  # before: held as long as the bytes kept coming
    finally:
        server.shutdown()
        server.server_close()
    failed = cli.logged("push to the Pushgateway failed")
    assert failed and failed[0]["reason"] == "took longer than timeout=1s"
    assert cli.logged("once done")[0]["pushed"] is False


def test_a_process_file_pushes_a_group_per_service(start_cli: StartCLI, pushgateway: str) -> None:
    """Each service in a group of its own (service=<name>), with only its own series."""
    gateway = {"url": pushgateway, "job": "nightly", "grouping_key": {"path": "/data/in"}}
    process = {
        "metrics": {"enabled": True, "pushgateway": gateway},
        "services": {
            "good": {"target": TARGET, "config": {}},
            "bad": {"target": TARGET, "config": {"mode": "fail"}},
        },
    }
    cli = start_cli("run", "--once", "--log-format", "json", config=process)
    assert cli.wait() == 1  # one cycle failed
    assert {line["service"]: line["pushed"] for line in cli.logged("once done")} == {
        "good": True,
        "bad": True,
    }
    text = pushed(pushgateway)
    # the Pushgateway relabels whatever a push holds with its group's service: each push
    # must hold only its own service's series (and the process's)
    for name, outcome, other in (
        ("good", "cycles_success", "cycles_failed"),
        ("bad", "cycles_failed", "cycles_success"),
    ):
        labels = {"job": "nightly", "path": "/data/in", "service": name}
        assert sample_value(text, "service_counter_total", name=outcome, **labels) == 1
        assert sample_value(text, "service_counter_total", name=other, **labels) == 0
        assert text.count(f'name="{outcome}",path="/data/in",service="{name}"') == 1
    groups = {
        line.split("push_time_seconds{", 1)[1].split("}")[0]
        for line in text.splitlines()
        if line.startswith("push_time_seconds{")
    }
    assert len(groups) == 2 and all('path="/data/in"' in group for group in groups)
