"""``bigbrotr run --config process.yaml``: several services in one process, over real HTTP."""

import json
import signal
import urllib.request
from collections.abc import Callable
from pathlib import Path

from bigbrotr.testing import sample_value
from tests.support.cli import CLI, TARGET, Scrape, WaitUntil

StartCLI = Callable[..., CLI]


def process(**services: dict[str, object]) -> dict[str, object]:
    """A process file: one endpoint on a free port, and each service as given."""
    return {"metrics": {"enabled": True, "port": 0}, "services": services}


def test_one_endpoint_serves_every_service_until_sigterm(
    start_cli: StartCLI, scrape: Scrape, wait_until: WaitUntil
) -> None:
    """One class twice under two names, and a cron service; all on one port; exit 0."""
    config = process(
        quick={"target": TARGET, "config": {"interval": 0.05}},
        flaky={"target": TARGET, "config": {"interval": 0.05, "mode": "flaky",
                                              "max_consecutive_failures": 0}},
        nightly={"target": TARGET, "config": {"schedule": "0 3 * * *"}},
    )  # fmt: skip
    cli = start_cli("run", "--log-format", "json", config=config)
    url = cli.metrics_url()

    def counted() -> str:
        text = scrape(url)
        value = sample_value(text, "service_counter_total", service="flaky", name="cycles_failed")
        return text if value is not None and value >= 2 else ""

    text = wait_until(counted, what="the flaky service to fail twice")
    for name in ("quick", "flaky", "nightly"):
        info = sample_value(
            text, "service_info", service=name, version="1.2.3", bigbrotr_version="0.1.0"
        )
        assert info == 1, name
    assert sample_value(text, "service_counter_total", service="quick", name="cycles_success")
    assert sample_value(text, "service_counter_total", service="quick", name="cycles_failed") == 0
    base = url.removesuffix("/metrics")
    with urllib.request.urlopen(f"{base}/readyz?verbose", timeout=5) as response:
        verbose = response.read().decode()
    assert "[+]quick: freshness ok" in verbose and "[+]nightly: freshness ok" in verbose
    with urllib.request.urlopen(f"{base}/status.json", timeout=5) as response:
        status = json.loads(response.read())
    each = {entry["service"]: entry for entry in status["services"]}
    assert [entry["service"] for entry in status["services"]] == ["flaky", "nightly", "quick"]
    assert each["nightly"]["schedule"] == "0 3 * * * (UTC)"  # the file's order (sorted here)
    cli.signal(signal.SIGTERM)
    assert cli.wait() == 0
    assert {line["service"] for line in cli.logged("starting")} == {"quick", "flaky", "nightly"}


def test_a_service_at_its_failure_limit_stops_the_process_naming_it(
    start_cli: StartCLI, tmp_path: Path
) -> None:
    """The others finish their cycle in progress (their grace), then exit 1 with one line."""
    (tmp_path / "marks").mkdir()
    config = process(
        failing={"target": TARGET, "config": {"interval": 0.05, "mode": "fail",
                                                "max_consecutive_failures": 3}},
        steady={"target": TARGET, "config": {"interval": 0.05,
                                               "marker_dir": str(tmp_path / "marks")}},
    )  # fmt: skip
    cli = start_cli("run", "--log-format", "json", config=config)
    assert cli.wait() == 1
    stopped = cli.logged("stopped")
    assert len(stopped) == 1
    assert (
        stopped[0] | {"reason": "failure limit", "service": "failing", "level": "error"}
        == (stopped[0])
    )
    assert len(cli.logged("cycle failed")) == 3
    assert list((tmp_path / "marks").iterdir())  # the steady one ran meanwhile


def test_once_runs_one_cycle_of_each_and_exits_1_if_any_failed(
    start_cli: StartCLI, tmp_path: Path
) -> None:
    """Concurrently, one `once done` line each; a failure anywhere is exit 1."""
    marks = {name: tmp_path / name for name in ("good", "bad")}
    for directory in marks.values():
        directory.mkdir()
    config = process(
        good={"target": TARGET, "config": {"marker_dir": str(marks["good"])}},
        bad={"target": TARGET, "config": {"mode": "fail", "marker_dir": str(marks["bad"])}},
    )
    cli = start_cli("run", "--once", "--log-format", "json", config=config)
    assert cli.wait() == 1
    assert all(len(list(directory.iterdir())) == 1 for directory in marks.values())
    done = {line["service"]: line["outcome"] for line in cli.logged("once done")}
    assert done == {"good": "success", "bad": "failure"}
