import base64
import json
import signal
import socket
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import bcrypt
import pytest

from bigbrotr import __version__
from bigbrotr.testing import sample_value
from tests.support.cli import CLI, TARGET, Scrape, WaitUntil
from tests.support.pki import PKI

StartCLI = Callable[..., CLI]


def fast(**fields: object) -> dict[str, object]:
    """A config for a quick test service with metrics on a free port."""
    return {"interval": 0.05, "metrics": {"enabled": True, "port": 0}, **fields}


def test_run_scrape_then_sigterm_stops_cleanly(
    scrape: Scrape,
    wait_until: WaitUntil,
    assert_port_free: Callable[[int], None],
    start_cli: StartCLI,
) -> None:
    """A running service is scraped, stops on SIGTERM with exit 0 and frees its port."""
    cli = start_cli("run", TARGET, "--log-format", "json", config=fast())
    url = cli.metrics_url()

    def successes() -> float:
        value = sample_value(
            scrape(url), "service_counter_total", service="e2e", name="cycles_success"
        )
        return value if value is not None and value >= 2 else 0

    wait_until(successes, what="two successful cycles")
    cli.signal(signal.SIGTERM)
    assert cli.wait() == 0
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    assert_port_free(port)
    lines = cli.json_lines()
    assert len(cli.logged("starting")) == 1
    assert cli.logged("starting")[0]["config"]["interval"] == 0.05
    assert all(line["service"] == "e2e" for line in lines)


def test_failure_limit_exits_1(start_cli: StartCLI, tmp_path: Path) -> None:
    """Reaching max_consecutive_failures stops the process with exit code 1."""
    config = fast(mode="fail", max_consecutive_failures=3, marker_dir=str(tmp_path / "m"))
    (tmp_path / "m").mkdir()
    cli = start_cli("run", TARGET, "--log-format", "json", config=config)
    assert cli.wait() == 1
    assert len(list((tmp_path / "m").iterdir())) == 3
    failures = cli.logged("cycle failed")
    assert len(failures) == 3
    assert failures[0]["level"] == "error"
    assert failures[0]["error"] == "RuntimeError: always fails"
    assert "Traceback" in failures[0]["exception"]
    assert cli.logged("failure limit reached, stopping")


def test_once_runs_one_cycle(start_cli: StartCLI, tmp_path: Path) -> None:
    """--once runs exactly one cycle and exits 0, without serving metrics."""
    config = fast(marker_dir=str(tmp_path))
    cli = start_cli("run", TARGET, "--once", "--log-format", "json", config=config)
    assert cli.wait() == 0
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("cycle")] == ["cycle-0"]
    assert not cli.logged("serving metrics")


def test_once_failure_exits_1(start_cli: StartCLI) -> None:
    """A failed --once cycle exits 1 and logs the error once."""
    cli = start_cli("run", TARGET, "--once", "--log-format", "json", config=fast(mode="fail"))
    assert cli.wait() == 1
    assert len(cli.logged("cycle failed")) == 1


def test_bad_config_exits_2_with_one_line(start_cli: StartCLI) -> None:
    """An invalid config file prints one line naming file and field, and exits 2."""
    cli = start_cli("run", TARGET, config=fast(mode="sideways"))
    assert cli.wait() == 2
    err = cli.stderr().strip()
    assert len(err.splitlines()) == 1
    assert "config-0.yaml: field 'mode'" in err
    assert "Traceback" not in err


def test_missing_explicit_config_exits_2(start_cli: StartCLI, tmp_path: Path) -> None:
    """An explicit --config that does not exist is an error, not a warning."""
    cli = start_cli("run", TARGET, "--config", str(tmp_path / "absent.yaml"))
    assert cli.wait() == 2
    assert cli.stderr().strip() == f"bigbrotr: error: config file not found: {tmp_path}/absent.yaml"


def test_port_in_use_exits_2_naming_the_port(
    start_cli: StartCLI, listening_socket: socket.socket, tmp_path: Path
) -> None:
    """A metrics port already taken is a one-line error naming host:port; no cycle runs."""
    busy = listening_socket.getsockname()[1]
    config = fast(marker_dir=str(tmp_path))
    config["metrics"] = {"enabled": True, "port": busy}
    cli = start_cli("run", TARGET, config=config)
    assert cli.wait() == 2
    err = cli.stderr().strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("bigbrotr: error: cannot serve metrics on ")
    assert f"127.0.0.1:{busy}" in err
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("cycle")]


@pytest.mark.parametrize("mode", ["slow", "thread"])
def test_second_signal_exits_at_once(
    wait_until: WaitUntil, start_cli: StartCLI, tmp_path: Path, mode: str
) -> None:
    """The first SIGTERM waits for the cycle; a second signal exits at once with 130."""
    config = fast(mode=mode, marker_dir=str(tmp_path))
    cli = start_cli("run", TARGET, "--log-format", "json", config=config)
    wait_until(lambda: (tmp_path / "cycle-0").exists(), what="the long cycle to start")
    cli.signal(signal.SIGTERM)
    wait_until(lambda: cli.logged("shutdown requested, stopping after the current cycle"))
    assert cli.proc.poll() is None
    cli.signal(signal.SIGINT)
    assert cli.wait(timeout=5) == 130
    assert cli.logged("second signal, exiting now")


@pytest.mark.parametrize("once", [False, True], ids=["continuous", "--once"])
def test_signal_during_startup_is_not_lost(
    wait_until: WaitUntil, start_cli: StartCLI, tmp_path: Path, once: bool
) -> None:
    """A SIGTERM while the service is still being imported stops it before any cycle."""
    marker = tmp_path / "importing"
    cycles = tmp_path / "cycles"
    cycles.mkdir()
    cli = start_cli(
        "run",
        TARGET,
        "--log-format",
        "json",
        *(["--once"] if once else []),
        config=fast(marker_dir=str(cycles)),
        env={"E2E_IMPORT_PAUSE": str(marker)},
    )
    wait_until(marker.exists, what="the import to start")
    cli.signal(signal.SIGTERM)
    assert cli.wait() == 0
    assert list(cycles.iterdir()) == []
    assert cli.logged("stopped before the cycle" if once else "stopped")


def test_python_dash_m_reports_version() -> None:
    """Python -m bigbrotr --version prints the version."""
    out = subprocess.run(
        [sys.executable, "-m", "bigbrotr", "--version"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == f"bigbrotr {__version__}"


def test_interrupt_exit_code_when_killed_twice_quickly(
    wait_until: WaitUntil, start_cli: StartCLI
) -> None:
    """Two SIGINTs in a row stop the process with 130."""
    cli = start_cli("run", TARGET, "--log-format", "json", config=fast(mode="slow"))
    cli.metrics_url()
    cli.signal(signal.SIGINT)
    # Two signals sent before the first is handled would merge into one.
    wait_until(lambda: cli.logged("shutdown requested, stopping after the current cycle"))
    cli.signal(signal.SIGINT)
    assert cli.wait(timeout=5) == 130


def test_sigterm_cancels_a_hung_cycle_after_the_grace(
    wait_until: WaitUntil, start_cli: StartCLI, tmp_path: Path
) -> None:
    """One SIGTERM ends a hung cycle after shutdown_grace; exit 0 within grace + 1 s."""
    config = fast(mode="slow", marker_dir=str(tmp_path), shutdown_grace=0.5)
    cli = start_cli("run", TARGET, "--log-format", "json", config=config)
    wait_until(lambda: (tmp_path / "cycle-0").exists(), what="the hung cycle to start")
    cli.signal(signal.SIGTERM)
    assert cli.wait(timeout=1.5) == 0
    assert cli.logged("cycle cancelled: still running after shutdown_grace")


def test_signals_are_heard_while_run_blocks_the_loop(
    wait_until: WaitUntil, start_cli: StartCLI, tmp_path: Path
) -> None:
    """With the loop blocked, SIGTERM is logged at once and a second signal exits 130 within 1 s."""
    config = fast(mode="block", marker_dir=str(tmp_path))
    cli = start_cli("run", TARGET, "--log-format", "json", config=config)
    wait_until(lambda: (tmp_path / "cycle-0").exists(), what="the loop to block")
    cli.signal(signal.SIGTERM)
    wait_until(lambda: cli.logged("shutdown requested, stopping after the current cycle"))
    assert cli.proc.poll() is None
    cli.signal(signal.SIGTERM)
    assert cli.wait(timeout=1) == 130
    assert cli.logged("second signal, exiting now")


def test_sigterm_exits_even_when_the_cycle_is_stuck_in_a_thread(
    wait_until: WaitUntil, start_cli: StartCLI, tmp_path: Path
) -> None:
    """A cycle blocked in asyncio.to_thread cannot hold the exit past grace + 1 s (+ 1 s)."""
    config = fast(mode="thread", marker_dir=str(tmp_path), shutdown_grace=0.5)
    cli = start_cli("run", TARGET, "--log-format", "json", config=config)
    wait_until(lambda: (tmp_path / "cycle-0").exists(), what="the cycle to block in a thread")
    cli.signal(signal.SIGTERM)
    assert cli.wait(timeout=3) == 0
    assert cli.logged("exiting without waiting for stuck threads")


def test_once_stopped_by_a_signal_exits_0(
    wait_until: WaitUntil, start_cli: StartCLI, tmp_path: Path
) -> None:
    """--once cut short by SIGTERM (after the grace) stops cleanly: exit 0."""
    config = fast(mode="slow", marker_dir=str(tmp_path), shutdown_grace=0.3)
    cli = start_cli("run", TARGET, "--once", "--log-format", "json", config=config)
    wait_until(lambda: (tmp_path / "cycle-0").exists(), what="the cycle to start")
    cli.signal(signal.SIGTERM)
    assert cli.wait(timeout=3) == 0


def test_the_services_own_idle_threads_do_not_cut_the_exit(
    start_cli: StartCLI, tmp_path: Path
) -> None:
    """A service's own idle pool is left to Python's usual exit: no forced exit, no warning."""
    cli = start_cli("run", TARGET, "--log-format", "json", config=fast(mode="pool"))
    cli.metrics_url()
    cli.signal(signal.SIGTERM)
    assert cli.wait() == 0
    assert not cli.logged("exiting without waiting for stuck threads")


def test_sighup_rereads_the_web_config(
    wait_until: WaitUntil, start_cli: StartCLI, tmp_path: Path
) -> None:
    """SIGHUP re-reads metrics.web_config_file: a rotated password works at once."""
    web = tmp_path / "web.yml"

    def users(password: bytes) -> str:
        hashed = bcrypt.hashpw(password, bcrypt.gensalt(rounds=4)).decode()
        return f"basic_auth_users:\n  p: '{hashed}'\n"

    web.write_text(users(b"old"))
    config = fast()
    config["metrics"] = {"enabled": True, "port": 0, "web_config_file": str(web)}
    cli = start_cli("run", TARGET, "--log-format", "json", config=config)
    url = cli.metrics_url()

    def status(password: str) -> int:
        token = base64.b64encode(f"p:{password}".encode()).decode()
        request = urllib.request.Request(url, headers={"Authorization": f"Basic {token}"})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    assert status("old") == 200
    web.write_text(users(b"new"))
    cli.signal(signal.SIGHUP)
    wait_until(lambda: cli.logged("web config reloaded"), what="the reload")
    assert (status("old"), status("new")) == (401, 200)
    cli.signal(signal.SIGTERM)
    assert cli.wait() == 0


def test_with_tls_the_start_up_line_says_https(
    wait_until: WaitUntil, start_cli: StartCLI, pki: PKI
) -> None:
    """With TLS on, the "serving metrics" line gives https:// URLs, and they answer."""
    web = pki.directory / "web-run.yml"
    web.write_text("tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n")
    config = fast()
    config["metrics"] = {"enabled": True, "port": 0, "web_config_file": str(web)}
    cli = start_cli("run", TARGET, "--log-format", "json", config=config)
    line = wait_until(lambda: cli.logged("serving metrics"), what="the URLs")[0]
    assert line["url"].startswith("https://127.0.0.1:")
    assert line["status_page"] == line["url"].removesuffix("/metrics") + "/"
    assert line["readyz"] == line["url"].removesuffix("/metrics") + "/readyz"
    context = ssl.create_default_context(cafile=pki.ca.cert)
    with urllib.request.urlopen(line["url"], timeout=5, context=context) as response:
        assert response.status == 200
    cli.signal(signal.SIGTERM)
    assert cli.wait() == 0


def test_sighup_reloads_while_run_blocks_the_loop(
    wait_until: WaitUntil, start_cli: StartCLI, tmp_path: Path
) -> None:
    """SIGHUP re-reads the web config on the server's thread, even with the loop blocked."""
    web = tmp_path / "web.yml"
    web.write_text("http_server_config:\n  headers:\n    X-Version: old\n")
    config = fast(mode="block", marker_dir=str(tmp_path))
    config["metrics"] = {"enabled": True, "port": 0, "web_config_file": str(web)}
    cli = start_cli("run", TARGET, "--log-format", "json", config=config)
    url = cli.metrics_url()
    wait_until(lambda: (tmp_path / "cycle-0").exists(), what="the loop to block")
    web.write_text("http_server_config:\n  headers:\n    X-Version: new\n")
    cli.signal(signal.SIGHUP)
    wait_until(lambda: cli.logged("web config reloaded"), what="the reload, loop still blocked")
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.headers["X-Version"] == "new"
    assert not cli.logged("event loop runs again")  # the cycle still blocks it
    cli.signal(signal.SIGTERM)
    wait_until(lambda: cli.logged("shutdown requested, stopping after the current cycle"))
    cli.signal(signal.SIGTERM)
    assert cli.wait() == 130


def test_a_failure_message_cannot_forge_text_log_lines(start_cli: StartCLI) -> None:
    """Text logs escape an exception's newlines and ANSI codes in the traceback too."""
    forged = "bad\n2026-01-01T00:00:00Z [info     ] all good\x1b[32m"
    config = {"mode": "fail", "fail_message": forged}
    cli = start_cli("run", TARGET, "--once", config=config)
    assert cli.wait() == 1
    log = cli.stderr()
    assert "\x1b" not in log
    assert not any(line.startswith("2026-01-01") for line in log.splitlines())
    assert "RuntimeError: bad\\n2026-01-01T00:00:00Z [info     ] all good\\x1b[32m" in log


@pytest.mark.parametrize("run_at_start", [False, True])
def test_a_cron_service_over_http_announces_its_next_start(
    start_cli: StartCLI, scrape: Scrape, wait_until: WaitUntil, run_at_start: bool
) -> None:
    """Scraped: the next minute as its next start, skips at 0; status.json has the schedule."""
    config = {"schedule": "* * * * *", "run_at_start": run_at_start,
              "metrics": {"enabled": True, "port": 0}}  # fmt: skip
    cli = start_cli("run", TARGET, "--log-format", "json", config=config)
    url = cli.metrics_url()
    labels = {"service": "e2e"}

    def scraped() -> str:
        text = scrape(url)
        succeeded = sample_value(text, "service_counter_total", name="cycles_success", **labels)
        started = succeeded is not None and succeeded >= (1 if run_at_start else 0)
        return text if started else ""

    text = wait_until(scraped, what="the first scrape after the start")
    next_start = sample_value(text, "service_gauge", name="next_cycle_timestamp", **labels)
    assert next_start is not None and next_start % 60 == 0  # on a minute, in UTC
    assert sample_value(text, "service_counter_total", name="cycles_skipped", **labels) == 0
    assert sample_value(text, "service_gauge", name="interval_seconds", **labels) == 60
    status = json.loads(scrape(url.removesuffix("/metrics") + "/status.json"))
    assert status["schedule"] == "* * * * * (UTC)"
    assert status["next_cycle_timestamp"] in (next_start, next_start + 60)  # a minute turned
    assert status["ready"] is True  # waiting for its first start is not stale
    cli.signal(signal.SIGTERM)
    assert cli.wait() == 0
