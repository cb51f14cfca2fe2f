import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from bigbrotr.testing import sample_value
from tests.support.cli import Scrape, WaitUntil

BIGBROTR = Path(sys.executable).parent / "bigbrotr"
SEED_NAMES_WITH_TYPE = {"service_gauge", "service_counter_total", "service_counter_created"}


def test_demo_prints_its_url_and_passes_promtool(
    scrape: Scrape, wait_until: WaitUntil, tmp_path: Path
) -> None:
    """`bigbrotr run demo` says where its metrics are; promtool flags only the seed's names."""
    log = tmp_path / "demo.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [str(BIGBROTR), "run", "demo"],
            env={"DEMO_METRICS_PORT": "0", "DEMO_INTERVAL": "0.2", "PATH": "/usr/bin:/bin"},
            stderr=err,
        )
    try:

        def url() -> str | None:
            found = re.search(r"serving metrics\s+.*url=(http://\S+)", log.read_text())
            return found.group(1) if found else None

        metrics_url = wait_until(url, what="the demo to print its metrics URL")
        assert metrics_url.startswith("http://127.0.0.1:")

        def scraped_after_a_cycle() -> str | None:
            text = scrape(metrics_url)
            done = sample_value(
                text, "service_counter_total", service="demo", name="cycles_success"
            )
            failed = sample_value(
                text, "service_counter_total", service="demo", name="cycles_failed"
            )
            return text if (done or 0) + (failed or 0) >= 1 else None

        text = wait_until(scraped_after_a_cycle, what="a demo cycle")
        check = subprocess.run(
            ["promtool", "check", "metrics"], input=text, capture_output=True, text=True
        )
        complaints = [line for line in check.stderr.splitlines() if line.strip()]
        flagged = {line.split()[0] for line in complaints}
        assert flagged <= SEED_NAMES_WITH_TYPE, complaints
        assert "service_gauge" in flagged
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_demo_says_what_it_is_and_what_to_open(wait_until: WaitUntil, tmp_path: Path) -> None:
    """`run demo --port 0` says its failures are on purpose, where to look, how to move."""
    log = tmp_path / "demo.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [str(BIGBROTR), "run", "demo", "--port", "0"],
            env={"PATH": "/usr/bin:/bin"},
            stderr=err,
        )
    try:
        serving = wait_until(
            lambda: re.search(r"serving metrics\s+(.*)", log.read_text()), what="the URLs"
        ).group(1)
        fields = dict(re.findall(r"(\w+)=(\S+)", serving))
        base = fields["url"].removesuffix("/metrics")
        assert base.startswith("http://127.0.0.1:") and not base.endswith(":8000")
        assert (fields["status_page"], fields["readyz"]) == (f"{base}/", f"{base}/readyz")
        intro = log.read_text()
        assert "fails about 1 cycle in 10 on purpose" in intro
        assert "bigbrotr run demo --port 8001" in intro
        with urllib.request.urlopen(fields["status_page"], timeout=5) as page:
            assert "<h1>demo</h1>" in page.read().decode()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
